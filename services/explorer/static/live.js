// Live updates for every explorer page, from the one /events stream (Server-Sent Events).
//
// On a tip, tx, reorg or resync event (those in the body's data-events: a page showing no
// mempool state skips tx events), and on pages with data-poll every few seconds while the
// page is visible, the page re-reads its own URL from the explorer, debounced (300 ms) with
// at most one fetch in flight, and merges what changed into <main> with idiomorph: server-
// rendered, autoescaped HTML parsed by DOMParser, never built from event data. Scroll position,
// open <details> and a text selection are kept (a part holding a selection waits until it is
// gone).
// Relative ages ("3 min ago", the exact time on hover) are kept fresh here too.
// No inline scripts anywhere: the Content-Security-Policy forbids them.
(function () {
  "use strict";
  var body = document.body;
  var state = document.getElementById("live-state");
  var pollMs = parseInt(body.getAttribute("data-poll") || "0", 10);
  var skew = 0; // the server's clock minus ours, in seconds
  var timer = null;
  var inFlight = false;
  var again = false; // an event came while a fetch was in flight
  var heldBack = false; // a part holding the user's selection waits for the next read
  var connectedBefore = false;

  // The page's language gives each state's words (data-on, data-reconnecting, … on the
  // #live-state element, from the catalog); English when a page names none.
  function setState(text) {
    if (!state) { return; }
    var key = "data-" + text.split(" ")[0].replace("\u2026", "");
    state.textContent = state.getAttribute(key) || "live updates: " + text;
  }
  function clientNow() { return Math.floor(Date.now() / 1000); }
  function readClock(doc) {
    var now = parseInt(doc.body.getAttribute("data-now") || "", 10);
    if (now) { skew = now - clientNow(); }
  }

  // The same wording as the server's `ago` filter (services/common/pages.py); in another
  // language the browser's Intl words for the same unit (Babel's on the server: "3분 전").
  var lang = document.documentElement.lang || "en";
  var relative = lang !== "en" && window.Intl && Intl.RelativeTimeFormat
    ? new Intl.RelativeTimeFormat(lang, { numeric: "always" }) : null;
  var justNow = body.getAttribute("data-just-now") || "just now";
  function agoIn(seconds) {
    var units = [[86400, "day"], [3600, "hour"], [60, "minute"], [1, "second"]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(seconds) >= units[i][0]) {
        return relative.format(-Math.round(seconds / units[i][0]), units[i][1]);
      }
    }
    return justNow;
  }
  function ago(then) {
    var seconds = clientNow() + skew - then;
    if (Math.abs(seconds) < 5) { return justNow; }
    if (relative) { return agoIn(seconds); }
    var ahead = seconds < 0;
    seconds = Math.abs(seconds);
    var text;
    if (seconds < 60) { text = seconds + " s"; }
    else if (seconds < 3600) { text = Math.floor(seconds / 60) + " min"; }
    else if (seconds < 86400) { text = Math.floor(seconds / 3600) + " h"; }
    else {
      var days = Math.floor(seconds / 86400);
      text = days + " day" + (days !== 1 ? "s" : "");
    }
    return ahead ? "in " + text : text + " ago";
  }
  function freshenAges(root) {
    var items = (root || document).querySelectorAll("time.ago[data-ts]");
    for (var i = 0; i < items.length; i++) {
      var ts = parseInt(items[i].getAttribute("data-ts"), 10);
      if (!isNaN(ts)) {
        var text = ago(ts);
        if (items[i].textContent !== text) { items[i].textContent = text; }
      }
    }
  }

  function holdsSelection(node) {
    var selection = window.getSelection ? window.getSelection() : null;
    if (!selection || selection.isCollapsed || selection.rangeCount === 0) { return false; }
    var range = selection.getRangeAt(0);
    return node.contains(range.startContainer) || node.contains(range.endContainer);
  }
  // Make <main> read like the fresh one with idiomorph (/static/vendor/idiomorph.min.js), which
  // keeps every node that stays, so focus, an open <details> and the rest of the page are as the
  // user left them. A changed text or a removed part holding the user's selection waits for the
  // next read: false when something had to wait.
  function swap(main, fresh) {
    var x = window.scrollX;
    var y = window.scrollY;
    var done = true;
    Idiomorph.morph(main, fresh, {
      morphStyle: "outerHTML", // <main> itself becomes the fresh <main>
      callbacks: {
        beforeNodeMorphed: function (old, next) {
          if (old.nodeType === 3 && old.nodeValue !== next.nodeValue && holdsSelection(old)) {
            done = false;
            return false;
          }
          return true;
        },
        beforeNodeRemoved: function (node) {
          if (holdsSelection(node)) { done = false; return false; }
          return true;
        },
        beforeAttributeUpdated: function (name, element) {
          return !(name === "open" && element.nodeName === "DETAILS");
        }
      }
    });
    window.scrollTo(x, y);
    return done;
  }

  function apply(status, text) {
    var doc = new DOMParser().parseFromString(text, "text/html");
    var fresh = doc.querySelector("main");
    var main = document.querySelector("main");
    if (!fresh || !main) { return; }
    // An answer for another kind of page (the explorer's own trouble page) is not this page.
    var samePage = doc.body.getAttribute("data-page") === body.getAttribute("data-page");
    if (!samePage && !(status >= 200 && status < 300)) { setState("could not refresh"); return; }
    readClock(doc);
    freshenAges(fresh);
    heldBack = !swap(main, fresh);
    if (doc.title) { document.title = doc.title; }
    body.setAttribute("data-page", doc.body.getAttribute("data-page") || "");
    var count = parseInt(body.getAttribute("data-updates") || "0", 10) + 1;
    body.setAttribute("data-updates", String(count));
    setState("on");
  }

  function refresh() {
    if (inFlight) { again = true; return; }
    inFlight = true;
    again = false;
    fetch(window.location.href, { headers: { "Accept": "text/html" }, cache: "no-store",
                                  credentials: "same-origin", redirect: "follow" })
      .then(function (r) { return r.text().then(function (t) { apply(r.status, t); }); })
      .catch(function () { setState("could not refresh"); })
      .then(function () {
        inFlight = false;
        if (again) { again = false; schedule(); }
        else if (heldBack) { schedule(2000); }
      });
  }
  function schedule(delay) {
    if (timer !== null) { return; }
    timer = window.setTimeout(function () { timer = null; refresh(); }, delay || 300);
  }

  readClock(document);
  freshenAges(document);
  window.setInterval(function () { freshenAges(document); }, 10000);
  if (pollMs > 0) {
    window.setInterval(function () {
      if (document.visibilityState === "visible") { schedule(); }
    }, pollMs);
    document.addEventListener("visibilitychange", function () {
      if (document.visibilityState === "visible") { schedule(); }
    });
  }

  if (!window.EventSource) { setState("not supported by this browser"); return; }
  var source = new EventSource("/events");
  source.addEventListener("hello", function () {
    setState("on");
    if (connectedBefore) { schedule(); } // events sent while we were away are lost
    connectedBefore = true;
  });
  var wanted = (body.getAttribute("data-events") || "tip tx reorg resync").split(" ");
  wanted.forEach(function (kind) {
    if (kind) { source.addEventListener(kind, function () { schedule(); }); }
  });
  source.onerror = function () { setState("reconnecting\u2026"); };
})();

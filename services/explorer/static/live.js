// Live updates for every explorer page, from the one /events stream (Server-Sent Events).
//
// On a tip, tx, reorg or resync event (those in the body's data-events: a page showing no
// mempool state skips tx events), and on pages with data-poll every few seconds while the
// page is visible, the page re-reads its own URL from the explorer, debounced (300 ms) with
// at most one fetch in flight, and swaps in the parts of <main> that changed: server-rendered,
// autoescaped HTML parsed by DOMParser, never built from event data. Scroll position, open
// <details> and a text selection are kept (a part holding a selection waits until it is gone).
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

  function setState(text) { if (state) { state.textContent = "live updates: " + text; } }
  function clientNow() { return Math.floor(Date.now() / 1000); }
  function readClock(doc) {
    var now = parseInt(doc.body.getAttribute("data-now") || "", 10);
    if (now) { skew = now - clientNow(); }
  }

  // The same wording as the server's `ago` filter (services/common/pages.py).
  function ago(then) {
    var seconds = clientNow() + skew - then;
    var ahead = seconds < 0;
    seconds = Math.abs(seconds);
    if (seconds < 5) { return "just now"; }
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
  // Attributes equal, leaving out what the user changes (an open <details>).
  function sameAttributes(a, b) {
    var left = a.attributes;
    var right = b.attributes;
    var skip = a.nodeName === "DETAILS" ? "open" : "";
    var count = 0;
    for (var i = 0; i < left.length; i++) {
      if (left[i].name === skip) { continue; }
      count++;
      if (b.getAttribute(left[i].name) !== left[i].value) { return false; }
    }
    for (var j = 0; j < right.length; j++) { if (right[j].name !== skip) { count--; } }
    return count === 0;
  }
  function replace(old, fresh) {
    if (holdsSelection(old)) { return false; }
    var copy = document.importNode(fresh, true);
    if (old.nodeName === "DETAILS" && fresh.nodeName === "DETAILS") { copy.open = old.open; }
    old.parentNode.replaceChild(copy, old);
    return true;
  }
  // Make `old` read like `fresh`, touching only what differs, so that the rest of the page
  // (a selection, an open <details>, focus) stays as the user left it. False when a part
  // holding the user's selection had to wait.
  function patch(old, fresh) {
    if (old.nodeType !== fresh.nodeType || old.nodeName !== fresh.nodeName) { return replace(old, fresh); }
    if (old.nodeType === 3) {
      if (old.nodeValue === fresh.nodeValue) { return true; }
      if (holdsSelection(old)) { return false; }
      old.nodeValue = fresh.nodeValue;
      return true;
    }
    if (old.nodeType !== 1) { return true; }
    if (old.outerHTML === fresh.outerHTML) { return true; }
    if (!sameAttributes(old, fresh)) { return replace(old, fresh); }
    return patchChildren(old, fresh);
  }
  // Two elements are the same part of the page if they have the same tag and id (or class).
  function samePart(a, b) {
    if (a.nodeType !== b.nodeType || a.nodeName !== b.nodeName) { return false; }
    if (a.nodeType !== 1) { return true; }
    if (a.id || b.id) { return a.id === b.id; }
    return a.className === b.className;
  }
  // Children in order: a fresh child matching a later old one drops the old ones between
  // (gone from the page); one matching none is inserted. Text only matches in place.
  function patchChildren(oldParent, freshParent) {
    var olds = Array.prototype.slice.call(oldParent.childNodes);
    var fresh = Array.prototype.slice.call(freshParent.childNodes);
    var at = 0;
    var done = true;
    for (var i = 0; i < fresh.length; i++) {
      var f = fresh[i];
      var match = -1;
      if (at < olds.length && samePart(olds[at], f)) { match = at; }
      else if (f.nodeType === 1) {
        for (var k = at + 1; k < olds.length; k++) {
          if (samePart(olds[k], f)) { match = k; break; }
        }
      }
      if (match === -1) {
        oldParent.insertBefore(document.importNode(f, true), at < olds.length ? olds[at] : null);
        continue;
      }
      for (var j = at; j < match; j++) {
        if (holdsSelection(olds[j])) { done = false; } else { oldParent.removeChild(olds[j]); }
      }
      done = patch(olds[match], f) && done;
      at = match + 1;
    }
    for (var r = at; r < olds.length; r++) {
      if (holdsSelection(olds[r])) { done = false; } else { oldParent.removeChild(olds[r]); }
    }
    return done;
  }
  function swap(main, fresh) {
    var x = window.scrollX;
    var y = window.scrollY;
    var done = patchChildren(main, fresh);
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

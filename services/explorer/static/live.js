// Live updates for the explorer: listens to /events (Server-Sent Events) and updates the page.
// No inline scripts anywhere (the Content-Security-Policy forbids them); chain data is only
// ever written with textContent, never as HTML.
(function () {
  "use strict";
  var state = document.getElementById("live-state");
  var banner = document.getElementById("live-banner");
  var bannerText = document.getElementById("live-text");
  var page = document.body.getAttribute("data-page");

  function setState(text) { if (state) { state.textContent = "live updates: " + text; } }
  function announce(text) {
    if (!banner) { return; }
    bannerText.textContent = text;
    banner.hidden = false;
  }
  function cell(text, href, mono) {
    var td = document.createElement("td");
    if (mono) { td.className = "mono"; }
    if (href) {
      var a = document.createElement("a");
      a.href = href;
      a.textContent = text;
      td.appendChild(a);
    } else {
      td.textContent = text;
    }
    return td;
  }
  function short(text, size) { return text.length <= size ? text : text.slice(0, size) + "\u2026"; }
  function when(ts) { return new Date(ts * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC"; }

  function refreshDashboard() {
    fetch("/api/summary", { headers: { "Accept": "application/json" } })
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(function (data) {
        var height = document.getElementById("stat-height");
        if (height) { height.textContent = String(data.height); }
        var mempool = document.getElementById("stat-mempool");
        if (mempool) { mempool.textContent = String(data.mempool_size); }
        var body = document.querySelector("#latest-blocks tbody");
        if (!body) { return; }
        while (body.firstChild) { body.removeChild(body.firstChild); }
        data.blocks.forEach(function (b, i) {
          var tr = document.createElement("tr");
          if (i === 0) { tr.className = "fresh"; }
          tr.appendChild(cell(String(b.index), "/block/" + b.hash, false));
          tr.appendChild(cell(short(b.hash, 20), "/block/" + b.hash, true));
          tr.appendChild(cell(when(b.timestamp), null, false));
          tr.appendChild(cell(String(b.tx_count), null, false));
          body.appendChild(tr);
        });
      })
      .catch(function () { setState("could not refresh"); });
  }

  if (!window.EventSource) { setState("not supported by this browser"); return; }
  var source = new EventSource("/events");
  source.addEventListener("hello", function () { setState("on"); });
  source.addEventListener("tip", function (e) {
    var data = JSON.parse(e.data);
    if (page === "dashboard") { refreshDashboard(); }
    else { announce("New block " + data.height + " on the chain."); }
  });
  source.addEventListener("tx", function () {
    if (page === "dashboard") { refreshDashboard(); }
  });
  source.addEventListener("reorg", function (e) {
    var data = JSON.parse(e.data);
    announce("Reorg: " + data.depth + " block(s) replaced.");
    if (page === "dashboard") { refreshDashboard(); }
  });
  source.addEventListener("resync", function () {
    if (page === "dashboard") { refreshDashboard(); } else { announce("The node reconnected."); }
  });
  source.onerror = function () { setState("reconnecting\u2026"); };
})();

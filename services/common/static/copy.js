// Copy buttons, shared by the explorer and the wallet: any <button class="copy" data-copy="...">
// copies its data-copy text to the clipboard. One listener on the document, so buttons in
// content swapped in later (live updates) work too. No inline scripts (the CSP forbids them).
(function () {
  "use strict";
  function fallback(text) {
    var area = document.createElement("textarea");
    area.value = text;
    area.setAttribute("readonly", "");
    area.style.position = "fixed";
    area.style.opacity = "0";
    document.body.appendChild(area);
    area.select();
    var ok = false;
    try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
    document.body.removeChild(area);
    return ok ? Promise.resolve() : Promise.reject(new Error("copy refused"));
  }
  function copy(text) {
    if (navigator.clipboard && window.isSecureContext) {
      return navigator.clipboard.writeText(text).catch(function () { return fallback(text); });
    }
    return fallback(text);
  }
  function show(button, text) {
    var before = button.getAttribute("data-label") || button.textContent;
    button.setAttribute("data-label", before);
    button.textContent = text;
    button.classList.add("done");
    window.setTimeout(function () {
      button.textContent = before;
      button.classList.remove("done");
    }, 1200);
  }
  document.addEventListener("click", function (event) {
    var target = event.target;
    var button = target && target.closest ? target.closest("button.copy[data-copy]") : null;
    if (!button) { return; }
    event.preventDefault();
    copy(button.getAttribute("data-copy")).then(
      function () { show(button, "Copied"); },
      function () { show(button, "Copy failed"); }
    );
  });
})();

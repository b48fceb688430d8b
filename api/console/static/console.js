// Keeps the live part of a task's page current while the task runs: fetches the fragment every
// 1.5 s and swaps it in when it changed, unless someone is typing in it. Stops once final.
(function () {
  "use strict";
  var POLL_MS = 1500;

  function poll(box) {
    var url = box.getAttribute("data-poll");
    var last = box.innerHTML;
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) {
          // Signed out meanwhile (the session ended): show the sign-in page, stop polling.
          if (r.redirected) { window.location.reload(); return null; }
          return r.ok ? r.text() : null;
        })
        .then(function (html) {
          if (html === null) { return; }
          var typing = box.contains(document.activeElement) &&
            /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
          if (html !== last && !typing) {
            box.innerHTML = html;
            last = html;
          }
          var state = box.querySelector("#task-state");
          if (state && state.getAttribute("data-final") === "true") {
            box.removeAttribute("data-poll");
            return;
          }
          setTimeout(tick, POLL_MS);
        })
        .catch(function () { setTimeout(tick, POLL_MS * 2); });
    }
    setTimeout(tick, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < boxes.length; i++) { poll(boxes[i]); }
  });
})();

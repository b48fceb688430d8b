// Keeps the live part of a task's or a batch's page current while it runs: fetches the fragment
// every 1.5 s and swaps it in when it changed, unless someone is typing in it. Stops once final
// (its data-final="true").
(function () {
  "use strict";
  var POLL_MS = 1500;

  // The fragment as the browser would write it back: the page's copy is compared in that form,
  // so a fragment equal to what is shown is not swapped in (which would replace the very button
  // an operator is pressing) just because the server's spacing or quoting differs.
  function written(html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    return t.innerHTML.trim();
  }

  function poll(box) {
    var url = box.getAttribute("data-poll");
    var last = written(box.innerHTML);

    function show(html) {
      var typing = box.contains(document.activeElement) &&
        /^(INPUT|TEXTAREA|SELECT)$/.test(document.activeElement.tagName);
      var now = written(html);
      if (now !== last && !typing) {
        box.innerHTML = html;
        last = now;
      }
      var state = box.querySelector("[data-final]");
      return !(state && state.getAttribute("data-final") === "true");
    }

    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "text/html"}})
        .then(function (r) {
          if (r.redirected) {  // the session ended meanwhile: show the sign-in page
            window.location.reload();
            return;
          }
          if (!r.ok) {  // a passing outage: try again, more slowly
            setTimeout(tick, POLL_MS * 4);
            return;
          }
          return r.text().then(function (html) {
            if (show(html)) {
              setTimeout(tick, POLL_MS);
            } else {
              box.removeAttribute("data-poll");
            }
          });
        })
        .catch(function () { setTimeout(tick, POLL_MS * 4); });
    }
    setTimeout(tick, POLL_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var boxes = document.querySelectorAll("[data-poll]");
    for (var i = 0; i < boxes.length; i++) { poll(boxes[i]); }
  });
})();

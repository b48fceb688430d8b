// Sandbox payer portal: the little behaviour real portals have in the browser.
// - eligibility results load behind a spinner, fetched as JSON after a delay;
// - "Add service line" reveals another set of service-line fields with fresh ids;
// - the announcement modal is dismissed without a page reload (the form still works without JS).
(function () {
  "use strict";

  function freshId() {
    return "f-" + Math.random().toString(16).slice(2, 12);
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showAlert(box, message) {
    box.replaceChildren(el("div", { class: "alert", role: "alert" }, message));
  }

  function loadEligibility(box) {
    var delay = parseInt(box.getAttribute("data-delay-ms"), 10) || 0;
    setTimeout(function () {
      fetch(box.getAttribute("data-url"), {
        headers: { "X-Page-Path": location.pathname + location.search },
        credentials: "same-origin",
      })
        .then(function (resp) {
          return resp.json().catch(function () { return {}; }).then(function (body) {
            if (resp.status === 401 && body.login) {
              location.assign(body.login);  // session expired while the spinner was up
              return;
            }
            if (!resp.ok) {
              showAlert(box, "The portal encountered an unexpected error.");
              return;
            }
            if (body.error) {
              showAlert(box, body.error);
              return;
            }
            var table = el("table", { class: "details" });
            table.appendChild(el("caption", {}, "Eligibility Result"));
            var tbody = el("tbody");
            body.rows.forEach(function (row) {
              var tr = el("tr");
              tr.appendChild(el("th", { scope: "row" }, row[0]));
              tr.appendChild(el("td", {}, row[1]));
              tbody.appendChild(tr);
            });
            table.appendChild(tbody);
            box.replaceChildren(table);
          });
        })
        .catch(function () {
          showAlert(box, "The portal encountered an unexpected error.");
        });
    }, delay);
  }

  function setUpAddLine(button) {
    var form = button.closest("form");
    var lines = form.querySelector("[data-lines]");
    var template = form.querySelector("template[data-line-template]");
    button.addEventListener("click", function () {
      var n = parseInt(lines.getAttribute("data-count"), 10) + 1;
      var html = template.innerHTML.split("__N__").join(String(n));
      var holder = document.createElement("div");
      holder.innerHTML = html;
      // Give each new control a fresh id and point its label at it.
      holder.querySelectorAll("label[for]").forEach(function (label) {
        var control = holder.querySelector("#" + CSS.escape(label.htmlFor));
        var id = freshId();
        if (control) control.id = id;
        label.htmlFor = id;
      });
      while (holder.firstChild) lines.appendChild(holder.firstChild);
      lines.setAttribute("data-count", String(n));
    });
  }

  function setUpModal(backdrop) {
    var form = backdrop.querySelector("form[data-dismiss-form]");
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      backdrop.remove();
      fetch(form.action, {
        method: "POST",
        headers: { "X-Requested-With": "fetch" },
        credentials: "same-origin",
      }).catch(function () { /* shown again on the next page if this failed */ });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("[data-eligibility]").forEach(loadEligibility);
    document.querySelectorAll("[data-add-line]").forEach(setUpAddLine);
    document.querySelectorAll("[data-modal]").forEach(setUpModal);
  });
})();

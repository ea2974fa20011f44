// Refinery workbench: sortable tables, live values, review shortcuts. Plain JS, no build step,
// no dependency; served by the worker itself (/static/workbench.js).
(function () {
  "use strict";

  // -- sortable tables: click (or Enter on) a column header to sort by it, again to reverse --
  function cellKey(row, index) {
    var cell = row.cells[index];
    if (!cell) return "";
    var raw = cell.getAttribute("data-sort");
    if (raw === null) raw = cell.textContent.trim();
    var number = parseFloat(raw.replace("%", ""));
    return isNaN(number) || !/^[-+]?[\d.]/.test(raw) ? raw.toLowerCase() : number;
  }
  function sortBy(table, index, button) {
    var body = table.tBodies[0];
    var ascending = button.getAttribute("data-dir") !== "asc";
    Array.prototype.forEach.call(table.querySelectorAll("th"), function (th) { th.removeAttribute("aria-sort"); });
    Array.prototype.forEach.call(table.querySelectorAll("th button"), function (b) { b.removeAttribute("data-dir"); });
    button.setAttribute("data-dir", ascending ? "asc" : "desc");
    button.parentNode.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = cellKey(a, index), y = cellKey(b, index);
      var blankX = x === "" || x === "–", blankY = y === "" || y === "–";
      if (blankX !== blankY) return blankX ? 1 : -1;  // undefined values last, either way
      if (typeof x !== typeof y) { x = String(x); y = String(y); }
      var order = x < y ? -1 : x > y ? 1 : 0;
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }
  function makeSortable(table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, index) {
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = th.textContent;
      button.title = "sort by " + th.textContent;
      th.textContent = "";
      th.appendChild(button);
      button.addEventListener("click", function () { sortBy(table, index, button); });
    });
  }

  // -- live values: poll the page's JSON and update [data-live] elements in place --
  function poll(url, every) {
    function apply(data) {
      var known = document.body.getAttribute("data-live-version");
      if (typeof data.version === "number" && known !== null && data.version > parseInt(known, 10)) {
        location.reload();  // new rows (a dataset or a label appeared): render them
        return;
      }
      var values = data.values || {};
      Array.prototype.forEach.call(document.querySelectorAll("[data-live]"), function (el) {
        var key = el.getAttribute("data-live");
        if (Object.prototype.hasOwnProperty.call(values, key) && el.textContent !== values[key]) {
          el.textContent = values[key];
          el.classList.add("changed");
          setTimeout(function () { el.classList.remove("changed"); }, 1500);
        }
      });
      var charts = data.charts || {};  // server-rendered SVG (every value escaped there)
      Object.keys(charts).forEach(function (id) {
        var el = document.getElementById(id);
        if (el) el.innerHTML = charts[id];
      });
      var stamp = document.getElementById("live-status");
      if (stamp) stamp.textContent = "live: updated " + new Date().toLocaleTimeString();
    }
    function tick() {
      fetch(url, {credentials: "same-origin", headers: {"Accept": "application/json"}})
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (data) { if (data) apply(data); })
        .catch(function () {})
        .then(function () { setTimeout(tick, every); });
    }
    setTimeout(tick, every);
  }

  // -- the review form: label filter, accept the predictions, keyboard shortcuts --
  function reviewForm(form) {
    var filter = document.getElementById("label-filter");
    if (filter) {
      filter.addEventListener("input", function () {
        var needle = filter.value.trim().toLowerCase();
        Array.prototype.forEach.call(form.querySelectorAll(".taxonomy li"), function (li) {
          var name = (li.getAttribute("data-label") || "").toLowerCase();
          li.hidden = needle !== "" && name.indexOf(needle) < 0 && !li.querySelector("input:checked");
        });
      });
    }
    function accept() {
      Array.prototype.forEach.call(form.querySelectorAll("input[name=labels]"), function (box) {
        box.checked = box.hasAttribute("data-predicted");
      });
    }
    var acceptButton = document.getElementById("accept");
    if (acceptButton) acceptButton.addEventListener("click", accept);
    function press(value) {
      var button = form.querySelector("button[name=action][value=" + value + "]");
      if (button) button.click();
    }
    document.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) { event.preventDefault(); press("review"); return; }
      var target = event.target;
      if (event.ctrlKey || event.metaKey || event.altKey) return;
      if (target && (target.tagName === "INPUT" && target.type === "text" || target.tagName === "TEXTAREA")) return;
      if (event.key === "n") { event.preventDefault(); press("skip"); }
      else if (event.key === "a") { event.preventDefault(); accept(); }
      else if (event.key === "s") { event.preventDefault(); press("review"); }
      else if (event.key === "/" && filter) { event.preventDefault(); filter.focus(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
    var live = document.body.getAttribute("data-live-url");
    if (live) poll(live, parseInt(document.body.getAttribute("data-live-every") || "2000", 10));
    var form = document.getElementById("review-form");
    if (form) reviewForm(form);
  });
})();

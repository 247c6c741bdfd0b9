// tracejudge UI, trace view: a span of the waterfall (click, or Enter/Space on its button) shows its details.
(function () {
  function show(spanId, scroll) {
    document.querySelectorAll(".span-detail").forEach(function (el) {
      el.hidden = el.getAttribute("data-span-id") !== spanId;
    });
    document.querySelectorAll(".wf-button").forEach(function (b) {
      var on = b.getAttribute("aria-controls") === "detail-" + spanId;
      b.setAttribute("aria-expanded", on ? "true" : "false");
      b.parentNode.classList.toggle("selected", on);
    });
    var panel = document.getElementById("detail-" + spanId);
    if (panel && scroll) panel.scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("DOMContentLoaded", function () {
    var rows = document.querySelector("#waterfall .wf-rows");
    if (!rows) return;
    rows.addEventListener("click", function (e) {
      var row = e.target.closest(".wf-row");
      if (row) show(row.getAttribute("data-span-id"), true);
    });
    rows.addEventListener("keydown", function (e) {
      if (e.key !== "ArrowDown" && e.key !== "ArrowUp") return;
      var row = e.target.closest(".wf-row");
      var next = row && (e.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling);
      if (!next) return;
      e.preventDefault();
      next.querySelector(".wf-button").focus();
    });
    var wanted = (location.hash.match(/^#span-([0-9a-f]{16})$/) || [])[1];
    var first = document.querySelector(".wf-row");
    if (wanted || first) show(wanted || first.getAttribute("data-span-id"), Boolean(wanted));
  });
})();

// tracejudge UI: dates in the browser's time zone (UTC on hover), after every page load and htmx swap.
(function () {
  function localTimes(root) {
    root.querySelectorAll("time[datetime]:not([data-local])").forEach(function (el) {
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d)) return;
      el.title = d.toISOString().replace(".000Z", "Z") + " (UTC)";
      el.textContent = d.toLocaleString(undefined, { year: "numeric", month: "short", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit" });
      el.setAttribute("data-local", "");
    });
  }
  document.addEventListener("DOMContentLoaded", function () { localTimes(document); });
  document.addEventListener("htmx:afterSwap", function (e) { localTimes(e.target); });
  window.tracejudge = { localTimes: localTimes };
})();

// tracejudge UI, SQL page: an example link fills the query box (Enter on it too); Ctrl/Cmd+Enter runs the query.
(function () {
  document.addEventListener("DOMContentLoaded", function () {
    var box = document.getElementById("query");
    if (!box) return;
    document.querySelectorAll(".examples a[data-query]").forEach(function (a) {
      a.addEventListener("click", function (e) {
        if (e.ctrlKey || e.metaKey || e.shiftKey) return;
        e.preventDefault();
        box.value = a.getAttribute("data-query");
        box.focus();
      });
    });
    box.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); box.form.requestSubmit(); }
    });
  });
})();

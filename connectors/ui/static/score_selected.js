// tracejudge UI, traces page: select traces and score them with a rule's scorers (POST /api/v1/score-traces),
// then follow the job (GET /api/v1/jobs/{id}) until it ends.
(function () {
  var ENDED = { succeeded: 1, failed: 1, cancelled: 1 };

  function el(tag, attrs, text) {
    var e = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text) e.textContent = text;
    return e;
  }

  function picked(form) {
    return Array.prototype.map.call(
      document.querySelectorAll('input[name="trace_id"][form="' + form.id + '"]:checked'),
      function (c) { return c.value; });
  }

  function loadRules(form, select) {
    var project = form.getAttribute("data-project");
    fetch("/api/v1/rules" + (project ? "?project=" + encodeURIComponent(project) : ""))
      .then(function (r) { return r.json(); })
      .then(function (doc) {
        select.textContent = "";
        select.appendChild(el("option", { value: "" }, doc.rules.length ? "choose a rule" : "no rule: create one first"));
        doc.rules.forEach(function (rule) {
          select.appendChild(el("option", { value: rule.id }, rule.name + " (" + rule.project + ", " + rule.scope + ")"));
        });
      })
      .catch(function () { select.firstChild.textContent = "rules could not be loaded"; });
  }

  function showJob(status, job) {
    var c = job.counts;
    status.textContent = "";
    status.appendChild(document.createTextNode("Job "));
    status.appendChild(el("a", { href: "/api/v1/jobs/" + job.job_id, id: "score-job", "data-state": job.state }, job.job_id.slice(0, 8)));
    status.appendChild(document.createTextNode(" " + job.state + ": " + c.processed + "/" + c.total +
      " traces, " + c.scored + " scored" + (c.errors ? ", " + c.errors + " errors" : "") +
      (job.last_error ? " (" + job.last_error + ")" : "") + " · "));
    status.appendChild(el("a", { href: "/rules/" + job.rule_id }, "rule page"));
    if (ENDED[job.state]) {
      status.appendChild(document.createTextNode(" · "));
      status.appendChild(el("a", { href: location.href }, "reload to see the scores"));
    }
  }

  function follow(status, jobId) {
    fetch("/api/v1/jobs/" + jobId).then(function (r) { return r.json(); }).then(function (job) {
      showJob(status, job);
      if (!ENDED[job.state]) setTimeout(function () { follow(status, jobId); }, 1000);
      else document.querySelectorAll('input[name="trace_id"]:checked').forEach(function (c) { c.checked = false; });
    }).catch(function () { setTimeout(function () { follow(status, jobId); }, 2000); });
  }

  function submit(form, status, e) {
    e.preventDefault();
    var ids = picked(form);
    var rule = form.elements.rule_id.value;
    if (!ids.length) { status.textContent = "Select traces first."; return; }
    status.textContent = "Starting…";
    fetch("/api/v1/score-traces", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ trace_ids: ids, rule_id: rule }) })
      .then(function (r) { return r.json().then(function (doc) { return [r.status, doc]; }); })
      .then(function (answer) {
        if (answer[0] !== 202) { status.textContent = (answer[1].error || {}).message || "refused"; return; }
        follow(status, answer[1].job_id);
      })
      .catch(function (err) { status.textContent = "Could not start the job: " + err; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    var form = document.getElementById("score-selected");
    if (!form) return;
    var status = document.getElementById("score-status");
    var count = document.getElementById("score-count");
    loadRules(form, document.getElementById("score-rule"));
    form.addEventListener("submit", function (e) { submit(form, status, e); });
    document.addEventListener("change", function (e) {
      if (e.target.id === "pick-all") {
        document.querySelectorAll('input[name="trace_id"]').forEach(function (c) { c.checked = e.target.checked; });
      }
      count.textContent = picked(form).length + " selected";
    });
  });
})();

// tracejudge UI, rules: the form's scorer types, Rewind... / Score past traces / Cancel (the jobs API),
// and the rule page's charts (uPlot). Server-rendered pages; this only adds what needs the browser.
(function () {
  "use strict";

  function refreshJobs() {
    var jobs = document.getElementById("jobs");
    if (jobs && window.htmx) htmx.ajax("GET", jobs.getAttribute("hx-get"), { target: "#jobs", swap: "outerHTML" });
  }

  function post(url, body) {
    return fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) })
      .then(function (r) {
        return r.json().then(function (doc) {
          if (!r.ok) throw new Error((doc.error && doc.error.message) || r.statusText);
          return doc;
        });
      });
  }

  function say(el, text, isError) {
    el.textContent = text;
    el.className = isError ? "error-box" : "muted";
  }

  var SCORER_FIELDS = ["name", "function", "args", "connection", "criteria", "evaluator", "min_score", "max_score",
    "threshold"];

  // --- the rule form: show the fields of each scorer's type, and span-scope fields for span scope
  function formSetup() {
    var form = document.getElementById("rule-form");
    if (!form) return;
    function sync() {
      form.querySelectorAll("fieldset.scorer").forEach(function (fs) {
        fs.setAttribute("data-type", fs.querySelector(".scorer-type").value);
      });
      form.setAttribute("data-scope", document.getElementById("rule-scope").value);
    }
    form.addEventListener("change", sync);
    sync();
    // the field the check names ("filter", "scorers[0].args", "scorers.1.criteria") is marked invalid, after
    // a check as you type or a Test rule (which refreshes the check's box out of band)
    document.addEventListener("htmx:afterSwap", function (e) {
      if (e.target.id !== "rule-check" && e.target.id !== "test-result") return;
      form.querySelectorAll("[aria-invalid]").forEach(function (el) { el.removeAttribute("aria-invalid"); });
      var problem = document.getElementById("check-problem");
      var field = problem ? problem.getAttribute("data-field") : "";
      var parts = (field || "").split(/[.[\]]+/).filter(Boolean);
      var name = parts[0];
      if (name === "scorers" && /^\d+$/.test(parts[1] || "")) {
        var key = parts.slice(2).filter(function (p) { return SCORER_FIELDS.indexOf(p) >= 0; })[0];
        name = key ? "scorer-" + parts[1] + "-" + key : "";
      }
      var input = name && form.querySelector("[name='" + name + "']");
      if (input) input.setAttribute("aria-invalid", "true");
    });
  }

  // --- Rewind...: the dry run's estimate, then Confirm
  function utc(value) {
    return value ? new Date(value).toISOString() : null;
  }

  function rewindSetup() {
    var form = document.getElementById("rewind-form");
    if (!form) return;
    var out = document.getElementById("rewind-estimate");
    var url = "/api/v1/rules/" + form.getAttribute("data-rule-id") + "/rewind";
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var body = { since: utc(form.since.value), until: utc(form.until.value) };
      say(out, "Estimating…");
      post(url, Object.assign({ dry_run: true }, body)).then(function (est) {
        out.className = "estimate";
        out.innerHTML = "";
        var p = document.createElement("p");
        p.id = "rewind-dry-run";
        p.textContent = est.traces + " traces (" + est.spans + " spans), " + est.judge_calls + " judge calls, about $" +
          est.estimated_cost_usd.toFixed(4) + " (" + est.estimated_input_tokens + " input tokens).";
        var confirm = document.createElement("button");
        confirm.type = "button";
        confirm.id = "rewind-confirm";
        confirm.textContent = "Confirm rewind";
        confirm.addEventListener("click", function () {
          confirm.disabled = true;
          post(url, body).then(function () {
            say(out, "Rewind started: follow it under Jobs.");
            refreshJobs();
          }, function (err) { say(out, err.message, true); confirm.disabled = false; });
        });
        out.appendChild(p);
        out.appendChild(confirm);
        confirm.focus();
      }, function (err) { say(out, err.message, true); });
    });
  }

  function backfillSetup() {
    var button = document.getElementById("backfill");
    if (!button) return;
    var out = document.getElementById("rescore-message");
    button.addEventListener("click", function () {
      button.disabled = true;
      post("/api/v1/rules/" + button.getAttribute("data-rule-id") + "/backfill", { last: 50 }).then(function () {
        say(out, "Scoring the last 50 matching traces: follow it under Jobs.");
        refreshJobs();
      }, function (err) { say(out, err.message, true); }).finally(function () { button.disabled = false; });
    });
  }

  document.addEventListener("click", function (e) {
    var cancel = e.target.closest && e.target.closest(".cancel-job");
    if (!cancel) return;
    cancel.disabled = true;
    post("/api/v1/jobs/" + cancel.getAttribute("data-job-id") + "/cancel", {}).then(refreshJobs, refreshJobs);
  });

  // --- charts: mean and pass rate per hour (the previous period dashed), and the values' distribution
  function chartsSetup() {
    var data = document.getElementById("chart-data");
    if (!data || !window.uPlot) return;
    var doc = JSON.parse(data.textContent);
    var css = getComputedStyle(document.documentElement);
    var accent = css.getPropertyValue("--accent").trim() || "#2456d6";
    document.querySelectorAll(".chart[data-kind]").forEach(function (el) {
      var s = doc.scorers[Number(el.getAttribute("data-index"))];
      var kind = el.getAttribute("data-kind");
      var width = Math.max(240, el.clientWidth || 320);
      if (kind === "hist") {
        new uPlot({ width: width, height: 160, legend: { show: false }, scales: { x: { time: false } },
          series: [{}, { label: "count", stroke: accent, fill: accent + "55", paths: uPlot.paths.bars({ size: [0.8, 40] }) }],
          axes: [{}, { size: 40 }] }, [s.hist.x, s.hist.y], el);
        return;
      }
      var label = kind === "mean" ? "mean" : "pass rate";
      new uPlot({ width: width, height: 160, spanGaps: false,
        scales: kind === "pass" ? { y: { range: [0, 1] } } : {},
        series: [{}, { label: label, stroke: accent, width: 2, points: { show: true, size: 4 } },
                 { label: "previous period", stroke: "#8a94a6", dash: [6, 4], width: 1.5 }],
        axes: [{}, { size: 40 }] }, [doc.x, s[kind], s[kind + "_prev"]], el);
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    formSetup();
    rewindSetup();
    backfillSetup();
    chartsSetup();
  });
})();

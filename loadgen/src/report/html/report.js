// Renders the loadgen JSON report embedded in this page: verdict, facts,
// charts over time (uPlot) with phase boundaries, and the tables of the
// terminal summary. Works with every schema version: a chart whose data
// the report does not carry says so instead of drawing nothing.
"use strict";

(function () {
  var report = JSON.parse(document.getElementById("report-data").textContent);
  var summary = report.summary || {};
  var points = summary.series || [];
  var phases = summary.phases || [];
  var checks = report.checks || [];
  var root = document.getElementById("report");
  root.textContent = "";

  // ---- small DOM helpers -------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }
  function ms(value) {
    if (value === null || value === undefined || isNaN(value)) return "-";
    if (value < 1) return value.toFixed(3) + " ms";
    if (value < 10) return value.toFixed(2) + " ms";
    if (value < 1000) return value.toFixed(1) + " ms";
    return (value / 1000).toFixed(2) + " s";
  }
  function num(value, digits) {
    if (value === null || value === undefined) return "-";
    return digits === undefined ? String(value) : Number(value).toFixed(digits);
  }
  function utc(unixMs) {
    return unixMs ? new Date(unixMs).toISOString().replace("T", " ").replace(/\.\d+Z$/, " UTC") : "-";
  }
  function table(header, rows, numeric) {
    var head = el("tr", {}, header.map(function (h) { return el("th", { text: h }); }));
    var body = rows.map(function (row) {
      var tr = el("tr", row.cls ? { "class": row.cls } : {});
      row.cells.forEach(function (cell, i) {
        var td = el("td", { text: cell });
        var classes = [];
        if (numeric.indexOf(i) >= 0) classes.push("num");
        if (row.cellClass && row.cellClass[i]) classes.push(row.cellClass[i]);
        if (classes.length) td.setAttribute("class", classes.join(" "));
        tr.appendChild(td);
      });
      return tr;
    });
    return el("table", {}, [el("thead", {}, [head]), el("tbody", {}, body)]);
  }

  // ---- header and verdict -----------------------------------------------
  var failed = checks.filter(function (c) { return !c.passed; });
  var verdict, detail, cls;
  if (summary.interrupted) {
    verdict = "INTERRUPTED"; cls = "interrupted";
    detail = "partial results; checks not evaluated";
  } else if (report.passed) {
    verdict = "PASS"; cls = "pass";
    detail = "all " + checks.length + " checks passed";
  } else {
    verdict = "FAIL"; cls = "fail";
    detail = failed.length
      ? failed.length + " of " + checks.length + " checks failed: " + failed.map(function (c) { return c.name; }).join(", ")
      : "the run did not complete (see the output of loadgen run)";
  }
  root.appendChild(el("h1", { text: "loadgen report: " + report.scenario }));
  if (report.description) root.appendChild(el("p", { "class": "description", text: report.description }));
  root.appendChild(el("div", { "class": "verdict " + cls, id: "verdict" }, [
    document.createTextNode(verdict), el("small", { text: detail })
  ]));
  var latency = summary.latency || {};
  var facts = [
    ["scenario", report.scenario], ["seed", report.seed], ["target", report.target],
    ["run id", report.run_id || "-"],
    ["started", utc(report.started_at_unix_ms)], ["ended", utc(report.ended_at_unix_ms)],
    ["requests", summary.requests], ["rate", num(summary.rate, 1) + " /s"],
    ["errors", summary.errors + " (" + num((summary.error_ratio || 0) * 100, 2) + " %)"],
    ["dropped", summary.dropped],
    ["latency p50 / p99", ms(latency.p50_ms) + " / " + ms(latency.p99_ms)],
    ["service time p99", ms((summary.service_time || {}).p99_ms)]
  ];
  root.appendChild(el("dl", { "class": "facts" }, facts.map(function (f) {
    return el("div", {}, [el("dt", { text: f[0] }), el("dd", { text: String(f[1]) })]);
  })));

  // ---- charts -------------------------------------------------------------
  root.appendChild(el("h2", { text: "Over time" }));
  var charts = el("div", { "class": "charts" });
  root.appendChild(charts);
  var rendered = 0;
  // Each point covers [t, t + seconds): drawn at its middle, so phase
  // lines fall where the change shows.
  var xs = points.map(function (p) { return p.t + (p.seconds || 1) / 2; });
  // The run's end (seconds since start): the last point usually covers
  // only part of its second, so rates divide by the part the run lasted,
  // and a sliver too short to give a rate is left out.
  var runEnd = phases.reduce(function (end, p) {
    return typeof p.offset_seconds === "number" ? Math.max(end, p.offset_seconds + (p.seconds || 0)) : end;
  }, 0);
  function width(p) {
    var w = p.seconds || 1;
    return runEnd > p.t && runEnd < p.t + w ? runEnd - p.t : w;
  }
  function rate(p, count) {
    var w = width(p);
    return w < 0.25 ? null : count / w;
  }
  function perSecond(field) {
    return points.map(function (p) { return p[field] === undefined ? null : rate(p, p[field]); });
  }
  function field(name) {
    return points.map(function (p) { return p[name] === undefined ? null : p[name]; });
  }
  function has(name) { return points.some(function (p) { return p[name] !== undefined; }); }

  // Phase boundaries: schema 2 records each phase's start; older reports
  // only have durations, which are laid end to end.
  var boundaries = [];
  var cursor = 0;
  phases.forEach(function (phase) {
    var start = typeof phase.offset_seconds === "number" ? phase.offset_seconds : cursor;
    boundaries.push({ at: start, label: phase.name });
    cursor = start + (phase.seconds || 0);
  });
  if (phases.length) boundaries.push({ at: cursor, label: "end" });
  var last = points[points.length - 1];
  var xEnd = Math.max(cursor, last ? last.t + (last.seconds || 1) : 1);

  function phaseLines(u) {
    var ctx = u.ctx, top = u.bbox.top, height = u.bbox.height;
    ctx.save();
    ctx.strokeStyle = "#8250df";
    ctx.fillStyle = "#8250df";
    ctx.lineWidth = 1.5 * devicePixelRatio;
    ctx.setLineDash([5 * devicePixelRatio, 4 * devicePixelRatio]);
    ctx.font = (11 * devicePixelRatio) + "px system-ui, sans-serif";
    // Each name starts right of its own line (uPlot leaves the alignment
    // of its last axis label behind), inside the plot.
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    boundaries.forEach(function (b) {
      var x = u.valToPos(b.at, "x", true);
      if (x < u.bbox.left - 1 || x > u.bbox.left + u.bbox.width + 1) return;
      ctx.beginPath();
      ctx.moveTo(x, top);
      ctx.lineTo(x, top + height);
      ctx.stroke();
      if (b.label !== "end") ctx.fillText(b.label, Math.max(x, u.bbox.left) + 3 * devicePixelRatio, top + 12 * devicePixelRatio);
    });
    ctx.restore();
  }

  // After uPlot drew: "drawn" only if every series has a path and data to
  // draw (the browser test counts these, so a chart without lines fails).
  function markLines(u) {
    var lines = 0;
    for (var i = 1; i < u.series.length; i++) {
      var finite = u.data[i].some(function (v) { return typeof v === "number" && isFinite(v); });
      if (u.series[i]._paths && finite) lines += 1;
    }
    var box = u.root.parentNode;
    box.setAttribute("data-lines", String(lines));
    box.setAttribute("data-chart", lines === u.series.length - 1 ? "drawn" : "without-lines");
  }

  function chart(id, title, note, unit, series, x) {
    x = x || xs;
    var box = el("section", { "class": "chart", id: id }, [el("h3", { text: title })]);
    if (note) box.appendChild(el("p", { "class": "note", text: note }));
    charts.appendChild(box);
    var present = series.filter(function (s) { return s.data.some(function (v) { return v !== null; }); });
    if (!points.length || !present.length) {
      box.appendChild(el("p", { "class": "absent", text: points.length
        ? "not recorded in this report (schema version " + report.schema_version + ")"
        : "no per-second data (the run was shorter than a second)" }));
      box.setAttribute("data-chart", "absent");
      return;
    }
    var width = Math.max(320, box.clientWidth - 16);
    var opts = {
      width: width,
      height: 240,
      // From the run start, so the first phase's line shows too.
      scales: { x: { time: false, range: [0, xEnd] } },
      legend: { live: false },
      cursor: { show: false },
      series: [{ label: "s" }].concat(present.map(function (s) {
        return { label: s.label, stroke: s.color, width: 1.6, dash: s.dash, points: { show: false }, spanGaps: false };
      })),
      axes: [
        { label: "seconds since start", size: 36 },
        { label: unit, size: 60 }
      ],
      hooks: { draw: [phaseLines, markLines] }
    };
    box.setAttribute("data-chart", "pending");
    new uPlot(opts, [x].concat(present.map(function (s) { return s.data; })), box);
    rendered += 1;
  }

  var openLoop = phases.some(function (p) { return /arrival-rate/.test(p.executor); });
  var rateSeries = [];
  if (openLoop && has("offered")) rateSeries.push({ label: "offered", color: "#8c959f", dash: [6, 4], data: perSecond("offered") });
  rateSeries.push({ label: "achieved (completed)", color: "#0969da", data: perSecond("requests") });
  chart("chart-rate", "Offered vs achieved rate",
    openLoop ? "offered: open-loop arrivals due per second; achieved: responses per second" : "closed loop: responses per second",
    "req/s", rateSeries);

  var latencySeries = [
    { label: "p50", color: "#1a7f37", data: field("p50_ms") },
    { label: "p90", color: "#bf8700", data: field("p90_ms") },
    { label: "p99", color: "#cf222e", data: field("p99_ms") }
  ];
  if (openLoop && has("service_p99_ms")) {
    latencySeries.push({ label: "service p50", color: "#1a7f37", dash: [4, 4], data: field("service_p50_ms") });
    latencySeries.push({ label: "service p90", color: "#bf8700", dash: [4, 4], data: field("service_p90_ms") });
    latencySeries.push({ label: "service p99", color: "#cf222e", dash: [4, 4], data: field("service_p99_ms") });
  }
  chart("chart-latency", "Latency per second",
    openLoop ? "solid: from the scheduled send time (coordinated omission corrected); dashed: service time from the actual send" : "from the send to the end of the response",
    "ms", latencySeries);

  var statusNames = [];
  points.forEach(function (p) {
    Object.keys(p.statuses || {}).forEach(function (s) { if (statusNames.indexOf(s) < 0) statusNames.push(s); });
  });
  statusNames.sort();
  var palette = { "2": ["#1a7f37", "#2da44e", "#4ac26b", "#116329"], "3": ["#0969da"], "4": ["#bc4c00", "#fb8f44", "#953800"],
    "5": ["#cf222e", "#a40e26", "#ff8182"], "x": ["#8250df", "#6e7781", "#bf3989"] };
  var used = {};
  var statusSeries = statusNames.map(function (name) {
    var family = /^[2-5]\d\d$/.test(name) ? name[0] : "x";
    var colors = palette[family] || palette.x;
    used[family] = (used[family] || 0) + 1;
    return {
      label: name, color: colors[(used[family] - 1) % colors.length],
      data: points.map(function (p) { return rate(p, (p.statuses || {})[name] || 0); })
    };
  });
  // Drops count as errors (as in the client error_ratio_max check).
  statusSeries.push({ label: "errors", color: "#1f2328", dash: [3, 3], data: points.map(function (p) {
    return p.errors === undefined ? null : rate(p, p.errors + (p.dropped || 0));
  }) });
  chart("chart-statuses", "Status codes and errors per second",
    "errors: any status other than the operation's expected one, transport failures and drops", "req/s", statusSeries);

  chart("chart-dropped", "Dropped per second",
    "open-loop arrivals not sent because max_in_flight requests were outstanding",
    "req/s", [{ label: "dropped", color: "#cf222e", data: perSecond("dropped") }]);

  // The service's own view (Prometheus), for runs that had it.
  var server = report.server;
  if (server && server.points && server.points.length) {
    var sx = server.points.map(function (p) { return p.t; });
    var column = function (name) { return server.points.map(function (p) { return p[name]; }); };
    var how = "job " + server.job + ", user routes, rate over " + server.window_seconds + " s (so it lags the client's per-second view)";
    chart("chart-server-rate", "Server side (Prometheus): requests and 5xx per second", how, "req/s", [
      { label: "server requests", color: "#0969da", data: column("rate") },
      { label: "server 5xx", color: "#cf222e", data: column("errors_5xx") }
    ], sx);
    chart("chart-server-p99", "Server side (Prometheus): p99 latency", how, "ms", [
      { label: "server p99", color: "#cf222e", data: column("p99_ms") }
    ], sx);
  }

  // ---- tables ---------------------------------------------------------------
  function statusText(op) {
    var parts = Object.keys(op.statuses || {}).map(function (k) { return k + "×" + op.statuses[k]; });
    Object.keys(op.transport_errors || {}).forEach(function (k) { parts.push(k + "×" + op.transport_errors[k]); });
    return parts.join(" ");
  }
  function latencyCells(name, count, rate, lat, service, statuses, errors) {
    lat = lat || {};
    return [name, String(count), num(rate, 1), ms(lat.p50_ms), ms(lat.p90_ms), ms(lat.p99_ms),
      ms(lat.p999_ms), ms(lat.max_ms), ms((service || {}).p99_ms), statuses, String(errors)];
  }
  root.appendChild(el("h2", { text: "Operations" }));
  var opRows = (summary.operations || []).map(function (op) {
    return { cells: latencyCells(op.name, op.count, op.rate, op.latency, op.service_time, statusText(op), op.errors),
      cellClass: { 10: op.errors ? "bad" : "" } };
  });
  opRows.push({ cls: "total", cells: latencyCells("all", summary.requests, summary.rate, summary.latency,
    summary.service_time, "dropped×" + summary.dropped, summary.errors), cellClass: { 10: summary.errors ? "bad" : "" } });
  root.appendChild(table(["operation", "count", "rate/s", "p50", "p90", "p99", "p99.9", "max", "service p99", "statuses", "errors"],
    opRows, [1, 2, 3, 4, 5, 6, 7, 8, 10]));
  if (summary.send_lag) {
    root.appendChild(el("p", { "class": "description", text: "open-loop send lag: p50 " + ms(summary.send_lag.p50_ms) +
      " p99 " + ms(summary.send_lag.p99_ms) + " max " + ms(summary.send_lag.max_ms) +
      " (latency is measured from the scheduled time)" }));
  }

  root.appendChild(el("h2", { text: "Phases" }));
  root.appendChild(table(["phase", "executor", "duration", "scheduled", "completed", "dropped", "errors", "rate/s", "p99"],
    phases.map(function (p) {
      return { cells: [p.name, p.executor, num(p.seconds, 1) + "s", p.scheduled === null || p.scheduled === undefined ? "-" : String(p.scheduled),
        String(p.completed), String(p.dropped), String(p.errors), num(p.achieved_rate, 1), ms((p.latency || {}).p99_ms)],
        cellClass: { 5: p.dropped ? "bad" : "", 6: p.errors ? "bad" : "" } };
    }), [2, 3, 4, 5, 6, 7, 8]));

  function checkTable(list) {
    return table(["check", "expected", "observed", "result"], list.map(function (c) {
      var result = c.passed ? "PASS" : "FAIL";
      return { cls: c.passed ? "" : "failed", cells: [c.name, c.expected, c.observed, result], cellClass: { 3: "result " + result } };
    }), []);
  }
  root.appendChild(el("h2", { text: "Checks" }));
  root.appendChild(checks.length ? checkTable(checks) : el("p", { text: summary.interrupted
    ? "checks not evaluated: the run was interrupted" : "no checks in this scenario" }));
  var serverChecks = checks.filter(function (c) { return !/^client /.test(c.name); });
  if (serverChecks.length) {
    root.appendChild(el("h2", { text: "Server side (Prometheus and the service's /metrics)" }));
    root.appendChild(checkTable(serverChecks));
  }
  root.appendChild(el("footer", { text: "loadgen JSON report schema version " + report.schema_version +
    " · charts: uPlot (MIT) · purple dashed lines mark phase starts" }));

  document.documentElement.setAttribute("data-charts", String(rendered));
  document.documentElement.setAttribute("data-ready", "true");
})();

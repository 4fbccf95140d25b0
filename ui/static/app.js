// duo-confidential admin: copy buttons and live updates. Every page works
// without this file; it only adds the copy buttons and refreshes numbers
// from GET /api/status without a reload.
(function () {
  "use strict";
  var SVG = "http://www.w3.org/2000/svg";

  function setupCopy() {
    document.querySelectorAll("button.copy").forEach(function (b) {
      if (!navigator.clipboard) { return; }
      b.hidden = false;
      b.setAttribute("aria-label", "Copy " + b.dataset.copy);
      b.addEventListener("click", function () {
        navigator.clipboard.writeText(b.dataset.copy).then(function () {
          b.textContent = "Copied";
          setTimeout(function () { b.textContent = "Copy"; }, 1500);
        });
      });
    });
    document.querySelectorAll(".js-only").forEach(function (e) { e.hidden = false; });
  }

  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }

  function seconds(s) {
    if (!s) { return "–"; }
    if (s < 0.001) { return Math.round(s * 1e6) + " µs"; }
    if (s < 1) { return (s * 1e3).toFixed(1) + " ms"; }
    return s.toFixed(2) + " s";
  }

  function el(tag, text, attrs) {
    var e = document.createElement(tag);
    if (text !== undefined) { e.textContent = text; }
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    return e;
  }

  function badge(ready) {
    return el("span", ready ? "ready" : "not ready", { "class": ready ? "badge ok" : "badge bad" });
  }

  function updateOverview(st) {
    (st.components || []).forEach(function (c) {
      var row = document.querySelector('tr[data-component="' + c.name + '"]');
      if (!row) { return; }
      var state = row.querySelector(".state");
      state.replaceChildren(badge(c.ready));
      row.querySelector(".detail").textContent = c.detail;
    });
  }

  function histogram(h, bounds, route, kind) {
    var fig = el("figure", undefined, { "class": kind === "overhead" ? "hist overhead" : "hist", "data-route": route, "data-kind": kind });
    var cap = el("figcaption");
    cap.append(kind === "overhead" ? "Proxy overhead (" + h.count + ")" : "Latency of ");
    if (kind !== "overhead") { cap.append(el("code", route), " (" + h.count + ")"); }
    fig.append(cap);
    var n = h.counts.length, peak = Math.max.apply(null, h.counts.concat([0]));
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 " + n * 10 + " 100");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", kind + " histogram of " + route + ": p50 " + seconds(h.p50_seconds) + ", p95 " + seconds(h.p95_seconds));
    h.counts.forEach(function (c, i) {
      var height = peak ? Math.floor(96 * c / peak) : 0;
      if (c > 0 && height < 2) { height = 2; }
      var r = document.createElementNS(SVG, "rect");
      r.setAttribute("x", i * 10); r.setAttribute("y", 100 - height);
      r.setAttribute("width", 8); r.setAttribute("height", height);
      var t = document.createElementNS(SVG, "title");
      t.textContent = (i < bounds.length ? "≤ " + seconds(bounds[i]) : "+Inf") + ": " + c;
      r.append(t);
      svg.append(r);
    });
    fig.append(svg);
    return fig;
  }

  function updatePart(part, id) {
    var table = document.getElementById("routes-" + id);
    var hists = document.getElementById("hists-" + id);
    if (!table || !hists) { return; }
    var overhead = !!part.overhead_buckets;
    var rows = (part.routes || []).map(function (r) {
      var tr = el("tr", undefined, { "data-route": r.route });
      var th = el("th", undefined, { scope: "row" });
      th.append(el("code", r.route));
      tr.append(th, el("td", String(r.requests), { "data-k": "requests" }), el("td", String(r.client_errors)),
        el("td", String(r.server_errors)), el("td", String(r.streams_in_flight)),
        el("td", seconds(r.latency.p50_seconds)), el("td", seconds(r.latency.p95_seconds)));
      if (overhead && r.overhead) { tr.append(el("td", seconds(r.overhead.p50_seconds)), el("td", seconds(r.overhead.p95_seconds))); }
      return tr;
    });
    if (!rows.length) {
      var empty = el("tr", undefined, { "class": "empty" });
      empty.append(el("td", "No requests yet.", { colspan: "9" }));
      rows = [empty];
    }
    table.tBodies[0].replaceChildren.apply(table.tBodies[0], rows);
    var figs = [];
    (part.routes || []).forEach(function (r) {
      if (r.latency.count) { figs.push(histogram(r.latency, part.latency_buckets, r.route, "latency")); }
      if (r.overhead && r.overhead.count) { figs.push(histogram(r.overhead, part.overhead_buckets, r.route, "overhead")); }
    });
    hists.replaceChildren.apply(hists, figs);
  }

  function update(st) {
    document.querySelectorAll("[data-field]").forEach(function (e) {
      var v = get(st, e.dataset.field);
      if (v !== undefined) { e.textContent = String(v); }
    });
    if (document.body.dataset.page === "overview") { updateOverview(st); }
    if (document.body.dataset.page === "traffic" && st.traffic) {
      updatePart(st.traffic.gateway, "gateway");
      updatePart(st.traffic.proxy, "proxy");
    }
    var live = document.getElementById("live");
    if (live) { live.textContent = "· live, updated " + new Date().toLocaleTimeString(); }
  }

  function poll() {
    fetch("/api/status", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname)); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (st) { if (st) { update(st); } })
      .catch(function () {
        var live = document.getElementById("live");
        if (live) { live.textContent = "· live updates paused (appliance unreachable)"; }
      });
  }

  document.addEventListener("DOMContentLoaded", function () {
    setupCopy();
    var page = document.body.dataset.page;
    if (page === "overview" || page === "traffic") {
      poll();
      setInterval(poll, page === "traffic" ? 2000 : 5000);
    }
  });
})();

// nbsched dashboard front end: an anywidget ES module, no build step.
// The wire protocol is documented in nbsched/dashboard.py; a row is an array in ROW_FIELDS order.
const NAME = 0, TRIGGER = 1, STATE = 2, NEXT = 3, LAST = 4, DURATION = 5, OUTCOME = 6, RUNS = 7, ERRORS = 8, ERROR = 9;
const COLUMNS = [
  ["name", "Job"], ["trigger", "Trigger"], ["state", "State"], ["next", "Next run"], ["last", "Last run"],
  ["duration", "Duration"], ["outcome", "Outcome"], ["runs", "Runs"], ["errors", "Errors"], ["actions", ""],
];

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text != null) e.textContent = text;
  return e;
}

function button(label, action, title) {
  const b = el("button", "nbsched-btn nbsched-btn-" + action, label);
  b.type = "button";
  b.dataset.action = action;
  if (title) b.title = title;
  return b;
}

function span(seconds) {
  const s = Math.ceil(seconds); // "in 1s" until it fires
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}

function duration(s) {
  if (s == null) return "-";
  if (s < 1e-3) return `${Math.round(s * 1e6)} \u00b5s`;
  if (s < 1) return `${(s * 1e3).toFixed(1)} ms`;
  if (s < 60) return `${s.toFixed(2)} s`;
  return `${Math.floor(s / 60)}m ${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function render({ model, el: host }) {
  let offset = 0; // kernel clock minus browser clock, seconds
  let haveOffset = false;
  let tz = undefined;
  let sched = {};
  let filter = "";
  const rows = new Map(); // name -> {data, tr, cells, errTr}

  const root = el("div", "nbsched-root");
  const header = el("div", "nbsched-header");
  const title = el("span", "nbsched-title", "nbsched");
  const summary = el("span", "nbsched-summary", "connecting\u2026");
  const status = el("span", "nbsched-status");
  const search = el("input", "nbsched-filter");
  search.type = "search";
  search.placeholder = "filter jobs";
  const pauseAll = button("Pause all", "pause_all", "pause the whole scheduler: no job fires");
  const resumeAll = button("Resume all", "resume_all", "resume the whole scheduler");
  header.append(title, summary, status, search, pauseAll, resumeAll);
  const banner = el("div", "nbsched-banner");
  banner.hidden = true;
  const scroller = el("div", "nbsched-scroll");
  const table = el("table", "nbsched-table");
  const thead = el("thead");
  const headRow = el("tr");
  for (const [key, label] of COLUMNS) headRow.append(el("th", "c-" + key, label));
  thead.append(headRow);
  const tbody = el("tbody");
  table.append(thead, tbody);
  const empty = el("div", "nbsched-empty",
    "No jobs yet: add one with %%schedule every 5m on a cell, or sched.add(func, \"every 5m\").");
  scroller.append(table, empty);
  const detail = el("div", "nbsched-detail");
  detail.hidden = true;
  root.append(header, banner, scroller, detail);
  host.append(root);

  const kernelNow = () => Date.now() / 1000 + offset;

  function clockTime(ts) {
    if (ts == null) return "-";
    const d = new Date(ts * 1000);
    const near = Math.abs(kernelNow() - ts) < 20 * 3600;
    const opts = near ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
      : { year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit", hour12: false };
    try { return d.toLocaleString("en-GB", { ...opts, timeZone: tz }); } catch (e) { return d.toLocaleString("en-GB", opts); }
  }

  function countdown(r) {
    const next = r.data[NEXT];
    if (sched.gone) return ["-", ""];
    if (sched.paused && next != null) return ["paused (all)", "is-muted"];
    if (next == null) return [r.data[STATE] === "finished" ? "finished" : "-", "is-muted"];
    const delta = next - kernelNow();
    if (delta > 0) return ["in " + span(delta), ""];
    if (delta > -2) return ["due", ""];
    return ["overdue " + span(-delta), "is-overdue"]; // the kernel is busy (a blocking cell?)
  }

  function makeRow(data) {
    const tr = el("tr", "nbsched-row");
    tr.dataset.job = data[NAME];
    const cells = {};
    for (const [key] of COLUMNS) {
      const td = el("td", "c-" + key);
      cells[key] = td;
      tr.append(td);
    }
    cells.state.append(el("span", "nbsched-badge"));
    const toggle = button("Pause", "pause", "pause this job");
    cells.actions.append(toggle, button("Run now", "run_now", "run this job once, now"),
      button("Remove", "remove", "remove this job (asks to confirm)"));
    const errTr = el("tr", "nbsched-error-row");
    errTr.dataset.job = data[NAME];
    const errTd = el("td");
    errTd.colSpan = COLUMNS.length;
    const errText = el("span", "nbsched-error-text");
    const tbButton = button("Traceback", "traceback", "show the last traceback");
    const pre = el("pre", "nbsched-traceback");
    pre.hidden = true;
    errTd.append(errText, tbButton, pre);
    errTr.append(errTd);
    errTr.hidden = true;
    return { data: null, tr, cells, toggle, errTr, errText, pre };
  }

  function setText(node, text) {
    if (node.textContent !== text) node.textContent = text;
  }

  function updateRow(r, data) {
    const old = r.data;
    r.data = data;
    const c = r.cells;
    const state = data[STATE];
    setText(c.name, data[NAME]);
    setText(c.trigger, data[TRIGGER]);
    const badge = c.state.firstChild;
    setText(badge, state);
    badge.className = "nbsched-badge nbsched-badge-" + state;
    r.tr.className = "nbsched-row nbsched-state-" + state + (model.get("selected") === data[NAME] ? " is-selected" : "");
    r.tr.dataset.state = state;
    setText(c.last, clockTime(data[LAST]));
    c.last.title = data[LAST] == null ? "" : new Date(data[LAST] * 1000).toISOString();
    setText(c.duration, duration(data[DURATION]));
    setText(c.outcome, data[OUTCOME] || "-");
    c.outcome.className = "c-outcome nbsched-outcome-" + (data[OUTCOME] || "none");
    setText(c.runs, String(data[RUNS]));
    setText(c.errors, String(data[ERRORS]));
    c.next.title = data[NEXT] == null ? "" : new Date(data[NEXT] * 1000).toISOString();
    const paused = state === "paused";
    setText(r.toggle, paused ? "Resume" : "Pause");
    r.toggle.dataset.action = paused ? "resume" : "pause";
    r.toggle.title = paused ? "resume this job" : "pause this job";
    const failing = state === "failing" && data[ERROR];
    setText(r.errText, failing ? "\u26a0 " + data[ERROR] : "");
    if (!old || old[ERROR] !== data[ERROR]) { r.pre.hidden = true; r.pre.textContent = ""; }
    r.errTr.hidden = !failing || !matches(data);
    tickRow(r);
  }

  function tickRow(r) {
    const [text, cls] = countdown(r);
    setText(r.cells.next, text);
    const want = "c-next " + cls;
    if (r.cells.next.className !== want) r.cells.next.className = want;
  }

  function matches(data) {
    if (!filter) return true;
    const hay = (data[NAME] + " " + data[TRIGGER] + " " + data[STATE]).toLowerCase();
    return hay.includes(filter);
  }

  function applyFilter() {
    for (const r of rows.values()) {
      const ok = matches(r.data);
      r.tr.hidden = !ok;
      r.errTr.hidden = !ok || !(r.data[STATE] === "failing" && r.data[ERROR]);
    }
  }

  function upsert(data) {
    let r = rows.get(data[NAME]);
    if (!r) {
      r = makeRow(data);
      rows.set(data[NAME], r);
      tbody.append(r.tr, r.errTr);
      r.tr.hidden = !matches(data);
    }
    updateRow(r, data);
  }

  function removeRow(name) {
    const r = rows.get(name);
    if (!r) return;
    r.tr.remove();
    r.errTr.remove();
    rows.delete(name);
  }

  function showSummary() {
    if (sched.gone) {
      summary.textContent = "the scheduler is gone";
      banner.hidden = true;
      return;
    }
    const plural = (n, word) => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`;
    const parts = [plural(sched.jobs, "job")];
    if (sched.running) parts.push(`${sched.running} running`);
    parts.push(`${sched.failing} failing`);
    parts.push(plural(sched.fires, "run"), plural(sched.errors, "error"));
    parts.push(sched.shutdown ? "scheduler shut down" : sched.paused ? "scheduler paused" : "scheduler running");
    summary.textContent = parts.join(" \u00b7 ");
    summary.classList.toggle("has-failing", sched.failing > 0);
    banner.hidden = !(sched.paused || sched.shutdown);
    banner.textContent = sched.shutdown ? "The scheduler was shut down: nothing will run."
      : "Scheduler paused: no job fires until Resume all.";
    pauseAll.disabled = !!(sched.paused || sched.shutdown);
    resumeAll.disabled = !sched.paused || !!sched.shutdown;
  }

  function showDetail(d) {
    if (!d) {
      detail.hidden = true;
      detail.replaceChildren();
      return;
    }
    detail.hidden = false;
    const close = button("\u00d7", "deselect", "close");
    const body = el("div", "nbsched-detail-body");
    body.innerHTML = d.html; // built and escaped kernel-side (nbsched/dashboard.py)
    detail.replaceChildren(close, body);
    detail.dataset.job = d.name;
  }

  function markSelected() {
    const sel = model.get("selected");
    for (const [name, r] of rows) r.tr.classList.toggle("is-selected", name === sel);
    if (!sel) showDetail(null);
  }

  function onMessage(msg) {
    if (!msg || typeof msg !== "object") return;
    if (typeof msg.now === "number") {
      const fresh = msg.now - Date.now() / 1000;
      // kernel time at send <= true kernel time at receipt: keep the largest recent estimate
      offset = !haveOffset || Math.abs(fresh - offset) > 5 ? fresh : Math.max(offset, fresh);
      haveOffset = true;
    }
    if (msg.t === "snapshot" || msg.t === "patch") {
      if (msg.sched) {
        sched = msg.sched;
        if (sched.tz) tz = sched.tz;
      }
      if (msg.t === "snapshot") {
        const keep = new Set((msg.rows || []).map((r) => r[NAME]));
        for (const name of [...rows.keys()]) if (!keep.has(name)) removeRow(name);
        // re-append in the kernel's order
        for (const data of msg.rows || []) upsert(data);
        for (const data of msg.rows || []) { const r = rows.get(data[NAME]); tbody.append(r.tr, r.errTr); }
      } else {
        for (const name of msg.removed || []) removeRow(name);
        for (const data of msg.rows || []) upsert(data);
      }
      if ("detail" in msg) showDetail(msg.detail);
      if (msg.sched) for (const r of rows.values()) tickRow(r);
      empty.hidden = rows.size > 0;
      showSummary();
    } else if (msg.t === "traceback") {
      const r = rows.get(msg.name);
      if (r) { r.pre.textContent = msg.text; r.pre.hidden = false; }
    } else if (msg.t === "notice") {
      status.textContent = msg.text;
      status.className = "nbsched-status is-" + (msg.level || "info");
      clearTimeout(status._timer);
      status._timer = setTimeout(() => { status.textContent = ""; }, 8000);
    }
  }

  const confirmTimers = new Map();

  function onClick(event) {
    const btn = event.target.closest("button[data-action]");
    const tr = event.target.closest("tr[data-job]");
    const name = tr ? tr.dataset.job : null;
    if (btn) {
      const action = btn.dataset.action;
      if (action === "deselect") { model.set("selected", ""); model.save_changes(); markSelected(); return; }
      if (action === "pause_all" || action === "resume_all") { model.send({ t: "action", action }); return; }
      if (!name) return;
      if (action === "traceback") {
        const r = rows.get(name);
        if (r && !r.pre.hidden) { r.pre.hidden = true; return; }
        model.send({ t: "traceback", name });
        return;
      }
      if (action === "remove" && !btn.classList.contains("is-confirming")) {
        btn.classList.add("is-confirming");
        btn.textContent = "Confirm remove";
        clearTimeout(confirmTimers.get(btn));
        confirmTimers.set(btn, setTimeout(() => { btn.classList.remove("is-confirming"); btn.textContent = "Remove"; }, 4000));
        return;
      }
      model.send({ t: "action", action, name });
      return;
    }
    if (tr && tr.classList.contains("nbsched-row")) {
      const sel = model.get("selected") === name ? "" : name;
      model.set("selected", sel);
      model.save_changes();
      markSelected();
    }
  }

  function onFilter() {
    filter = search.value.trim().toLowerCase();
    applyFilter();
  }

  root.addEventListener("click", onClick);
  search.addEventListener("input", onFilter);
  model.on("msg:custom", onMessage);
  model.on("change:selected", markSelected);
  const ticker = setInterval(() => { for (const r of rows.values()) tickRow(r); }, 1000);
  model.send({ t: "hello" });

  return () => {
    clearInterval(ticker);
    model.off("msg:custom", onMessage);
    model.off("change:selected", markSelected);
    for (const t of confirmTimers.values()) clearTimeout(t);
  };
}

export default { render };

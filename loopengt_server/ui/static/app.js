// loopengt web view: the runs list and a run's page, kept live by the server's event stream.
// No build step: plain JavaScript, the DOM built with textContent (nothing from a run becomes markup),
// the graph drawn by the vendored Mermaid. URLs are relative, so the view works wherever it is mounted.
"use strict";

const TOKEN_KEY = "loopengt-token";
let current = null; // the view on screen: {stop()}
let graphCount = 0;

mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "default" });

// --- helpers -------------------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "text") el.textContent = value;
    else el.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

// replaceChildren, leaving out null and undefined (the DOM would show them as text).
function fill(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

function pretty(value) {
  return typeof value === "string" ? value : JSON.stringify(value, null, 2);
}

function age(iso) {
  if (!iso) return "";
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 60) return `${Math.floor(seconds)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86400)} d`;
}

function spendText(spend) {
  if (!spend || !spend.submissions) return "";
  if (spend.unknown === spend.submissions) return "unknown";
  const cost = spend.costed ? ` · $${spend.cost_usd}` : " · cost unknown";
  return `${spend.tokens} tokens${cost}${spend.unknown ? ` (${spend.unknown} of ${spend.submissions} submissions reported no usage)` : ""}`;
}

function say(text, ok) {
  const box = document.getElementById("message");
  box.textContent = text || "";
  box.hidden = !text;
  box.className = ok ? "ok" : "";
}

function auth() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

function live(on, text) {
  const el = document.getElementById("live");
  el.textContent = text;
  el.className = on ? "live on" : "live";
}

class Refused extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

async function refusal(response) {
  let message = `${response.status} ${response.statusText}`;
  try { message = (await response.json()).error || message; } catch (_) { /* not JSON */ }
  if (response.status === 401) askToken();
  return new Refused(response.status, message);
}

function askToken() {
  const form = document.getElementById("token-form");
  form.hidden = false;
  form.onsubmit = (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
    form.hidden = true;
    route();
  };
}

async function post(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...auth() },
    body: JSON.stringify(body || {}),
  });
  if (!response.ok) throw await refusal(response);
  return response.json();
}

// Server-Sent Events over fetch (EventSource cannot send the token header). Reconnects after a drop;
// each connection starts with a fresh snapshot, so nothing is missed.
function stream(path, onEvent) {
  const control = new AbortController();
  let stopped = false;
  (async () => {
    while (!stopped) {
      try {
        const response = await fetch(path, { headers: auth(), signal: control.signal });
        if (!response.ok) throw await refusal(response);
        live(true, "live");
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const chunk = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            let name = "message";
            const data = [];
            for (const row of chunk.split("\n")) {
              if (row.startsWith("event: ")) name = row.slice(7);
              else if (row.startsWith("data: ")) data.push(row.slice(6));
            }
            if (data.length) onEvent(name, JSON.parse(data.join("\n")));
          }
        }
      } catch (error) {
        if (stopped) return;
        live(false, "disconnected");
        if (error instanceof Refused) { say(error.message); if (error.status !== 503) return; }
      }
      if (!stopped) await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  })();
  return { stop() { stopped = true; control.abort(); } };
}

// --- the runs list -------------------------------------------------------------------------------

const STATUSES = ["running", "waiting_approval", "paused", "completed", "failed", "cancelled"];

function showRuns(status) {
  const main = document.getElementById("main");
  const filter = h("select", { id: "status-filter", onchange: (e) => { location.hash = e.target.value ? `#/?status=${e.target.value}` : "#/"; } },
    h("option", { value: "" }, "every status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === status }, s)));
  const body = h("tbody");
  fill(main,
    h("h1", {}, "Runs"),
    h("div", { class: "actions" }, h("label", {}, "Show ", filter)),
    h("table", { id: "runs-table" },
      h("thead", {}, h("tr", {}, ["run", "loop", "status", "turn", "started", "updated", "spend"].map((c) => h("th", {}, c)))),
      body));
  const query = status ? `?status=${encodeURIComponent(status)}` : "";
  return stream(`api/stream${query}`, (_, data) => {
    fill(body, ...data.runs.map((run) => h("tr", { "data-run": run.run_id },
      h("td", {}, h("a", { href: `#/run/${encodeURIComponent(run.run_id)}` }, run.run_id),
        run.parent_run_id ? h("div", { class: "label" }, `forked from ${run.parent_run_id}`) : null),
      h("td", {}, run.loop),
      h("td", {}, h("span", { class: `badge ${run.status}` }, run.status), run.error ? h("div", { class: "label" }, run.error) : null),
      h("td", {}, run.turn),
      h("td", { title: run.started_at }, age(run.started_at)),
      h("td", { title: run.updated_at }, age(run.updated_at)),
      h("td", {}, spendText(run.spend)))));
    if (!data.runs.length) body.append(h("tr", {}, h("td", { colspan: 7 }, "No runs in this store yet.")));
  });
}

// --- a run ---------------------------------------------------------------------------------------

function showRun(runId) {
  const main = document.getElementById("main");
  const head = h("section", { id: "run-head" });
  const approval = h("section", { id: "approval" });
  const graph = h("div", { id: "graph" });
  const tasks = h("div", { id: "tasks" });
  const checkpoints = h("div", { id: "checkpoints" });
  const timeline = h("tbody");
  fill(main, head, approval,
    h("h2", {}, "Loop"), graph,
    h("h2", {}, "Tasks"), tasks,
    h("h2", {}, "Checkpoints and forks"), checkpoints,
    h("h2", {}, "Timeline"), h("table", { id: "timeline" }, timeline));
  const state = { graph: "", tasks: new Map(), run: null, spec: null, children: [] };

  async function act(what, body, done) {
    try {
      const answer = await post(`api/runs/${encodeURIComponent(runId)}/${what}`, body);
      say(done(answer), true);
    } catch (error) {
      say(error.message);
    }
  }

  function drawHead(data) {
    const run = data.run;
    const parent = run.parent_run_id ? h("span", {}, "forked from ", h("a", { href: `#/run/${encodeURIComponent(run.parent_run_id)}` }, run.parent_run_id)) : null;
    const ended = ["completed", "failed", "cancelled"].includes(run.status);
    const label = h("input", { id: "checkpoint-label", placeholder: "checkpoint label (optional)" });
    const reason = h("input", { id: "cancel-reason", placeholder: "reason to cancel (optional)" });
    fill(head,
      h("h1", {}, `Run ${run.run_id} `, h("span", { id: "run-status", class: `badge ${run.status}` }, run.status)),
      h("div", { class: "facts" },
        h("span", {}, `loop ${run.loop}` + (state.spec ? ` (${state.spec.pattern})` : "")),
        h("span", {}, `turn ${run.turn}`),
        h("span", { title: run.started_at }, `started ${age(run.started_at)} ago`),
        run.spend && run.spend.submissions ? h("span", {}, `spend ${spendText(run.spend)}`) : null, parent),
      state.spec && state.spec.goal ? h("div", {}, state.spec.goal) : null,
      run.error ? h("div", { class: "label" }, run.error) : null,
      h("div", { class: "label" }, run.next_action),
      ended ? null : h("div", { class: "actions" },
        label, h("button", { id: "checkpoint-btn", onclick: () => act("checkpoint", { label: label.value }, (a) => `checkpoint ${a.checkpoint.checkpoint_id} taken`) }, "Take a checkpoint"),
        reason, h("button", { id: "cancel-btn", onclick: () => { if (confirm(`Cancel run ${run.run_id}?`)) act("cancel", { reason: reason.value }, (a) => `run ${a.run.run_id} ${a.run.status}`); } }, "Cancel run")),
      h("div", { class: "actions" }, h("a", { href: `api/runs/${encodeURIComponent(run.run_id)}/report`, onclick: (e) => { e.preventDefault(); download(run.run_id); } }, "Markdown report")));
  }

  function drawApproval(request) {
    if (!request) { fill(approval); return; }
    const comment = h("textarea", { id: "approval-comment", placeholder: "reason (becomes the agent's feedback on a rejection)" });
    const by = h("input", { id: "approval-by", value: state.person || "" });
    const answer = (approved) => act("approve", { approved, comment: comment.value, by: by.value, task_id: request.task_id },
      (a) => `${approved ? "approved" : "rejected"}; run ${a.run.run_id} is ${a.run.status}`);
    const allowed = (request.via || []).includes("web");
    fill(approval, h("div", { class: "approval" },
      h("strong", {}, `Waiting for a person: gate ${request.gate} of step ${request.step} (${request.task_id})`),
      request.prompt ? h("div", {}, request.prompt) : null,
      h("div", { class: "label" }, "output to approve"), h("pre", {}, pretty(request.output)),
      allowed ? comment : h("div", {}, `this gate takes answers through ${request.via.join(", ")} only`),
      allowed ? h("div", { class: "actions" }, h("label", {}, "by ", by),
        h("button", { id: "approve-btn", onclick: () => answer(true) }, "Approve"),
        h("button", { id: "reject-btn", onclick: () => answer(false) }, "Reject")) : null));
  }

  async function drawGraph(text) {
    if (text === state.graph) return;
    state.graph = text;
    try {
      const { svg } = await mermaid.render(`graph-${++graphCount}`, text);
      if (state.graph === text) graph.innerHTML = svg; // Mermaid's own SVG (strict mode sanitises labels)
    } catch (error) {
      fill(graph, h("pre", {}, text), h("div", { class: "label" }, `could not draw: ${error.message || error}`));
    }
  }

  function drawTask(task) {
    const gates = task.gates.map((g) => {
      const verdict = g.passed === null ? "wait" : g.passed ? "pass" : "fail";
      const word = { wait: "waiting", pass: "passed", fail: "failed" }[verdict];
      return h("div", { class: `gate ${verdict}`, "data-gate": g.gate },
        `gate ${g.gate}: ${word}` + (g.exit_code !== null ? ` (exit ${g.exit_code})` : "") + (g.approval ? ` — ${g.approval}` : ""),
        g.feedback ? h("div", { class: "label" }, g.feedback) : null,
        g.output ? h("pre", {}, g.output) : null);
    });
    const diffBox = h("pre", { hidden: true });
    const canDiff = task.tree && task.base_tree && state.run && state.run.workspace;
    const who = task.agent ? `agent ${task.agent}` : `command ${(task.command || []).join(" ")}`;
    const el = h("details", { "data-task": task.task_id, open: tasks.querySelector(`[data-task="${CSS.escape(task.task_id)}"][open]`) ? true : null },
      h("summary", {}, `${task.task_id} · ${who} · attempt ${task.attempt} · `, h("span", { class: "outcome" }, task.outcome || "open")),
      task.instructions ? [h("div", { class: "label" }, "instructions"), h("pre", {}, task.instructions)] : null,
      task.input && Object.keys(task.input).length ? [h("div", { class: "label" }, "input"), h("pre", {}, pretty(task.input))] : null,
      task.feedback ? [h("div", { class: "label" }, "feedback"), h("pre", {}, task.feedback)] : null,
      task.output !== null ? [h("div", { class: "label" }, "output"), h("pre", { class: "output" }, pretty(task.output))] : null,
      task.error ? [h("div", { class: "label" }, "error"), h("pre", {}, task.error)] : null,
      gates,
      canDiff ? h("button", { class: "diff-btn", onclick: async () => {
        try {
          const response = await fetch(`api/runs/${encodeURIComponent(runId)}/diff?task=${encodeURIComponent(task.task_id)}`, { headers: auth() });
          if (!response.ok) throw await refusal(response);
          diffBox.textContent = await response.text();
          diffBox.hidden = false;
        } catch (error) { say(error.message); }
      } }, "Show the files this step changed") : null,
      diffBox);
    const old = tasks.querySelector(`[data-task="${CSS.escape(task.task_id)}"]`);
    if (old) old.replaceWith(el); else tasks.append(el);
  }

  function drawCheckpoints(list) {
    const rows = list.map((c) => h("tr", { "data-checkpoint": c.checkpoint_id },
      h("td", {}, c.checkpoint_id), h("td", {}, `seq ${c.seq}`), h("td", {}, c.label || ""),
      h("td", {}, c.created_at), h("td", {}, c.commit ? c.commit.slice(0, 12) : "")));
    const forks = state.children.map((c) => h("li", {}, "fork ", h("a", { href: `#/run/${encodeURIComponent(c.run_id)}` }, c.run_id), ` (${c.status})`));
    fill(checkpoints,
      rows.length ? h("table", {}, h("tbody", {}, rows)) : h("div", { class: "label" }, "No checkpoints."),
      forks.length ? h("ul", {}, forks) : null);
  }

  function addEvents(events, fresh) {
    for (const e of events) {
      timeline.append(h("tr", { "data-seq": e.seq, "data-type": e.type, class: fresh ? "fresh" : null },
        h("td", {}, e.seq), h("td", { title: e.at }, e.at.slice(11, 23)), h("td", {}, e.type), h("td", {}, e.text)));
    }
  }

  function apply(name, data) {
    if (name === "problem") { say(data.error); return; }
    if (name === "snapshot") {
      state.spec = data.spec;
      state.children = data.children || [];
      fill(tasks);
      fill(timeline);
    }
    state.run = data.run;
    drawHead(data);
    drawApproval(data.approval);
    drawGraph(data.graph);
    for (const task of data.tasks) drawTask(task);
    drawCheckpoints(data.checkpoints);
    addEvents(data.events, name === "update");
  }

  fetch("api/me", { headers: auth() }).then((r) => r.ok ? r.json() : null).then((me) => { if (me) state.person = me.person; });
  return stream(`api/runs/${encodeURIComponent(runId)}/stream`, apply);
}

async function download(runId) {
  try {
    const response = await fetch(`api/runs/${encodeURIComponent(runId)}/report`, { headers: auth() });
    if (!response.ok) throw await refusal(response);
    const url = URL.createObjectURL(await response.blob());
    const link = h("a", { href: url, download: `${runId}.md` });
    document.body.append(link);
    link.click();
    link.remove();
    URL.revokeObjectURL(url);
  } catch (error) { say(error.message); }
}

// --- routing -------------------------------------------------------------------------------------

function route() {
  if (location.hash.startsWith("#token=")) { // `loopengt ui --open` passes the token here (never sent)
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(location.hash.slice(7)));
    history.replaceState(null, "", location.pathname + location.search + "#/");
  }
  if (current) current.stop();
  say("");
  live(false, "connecting…");
  const hash = location.hash.replace(/^#/, "") || "/";
  const run = hash.match(/^\/run\/(.+)$/);
  if (run) current = showRun(decodeURIComponent(run[1]));
  else current = showRuns(new URLSearchParams(hash.split("?")[1] || "").get("status"));
}

window.addEventListener("hashchange", route);
route();

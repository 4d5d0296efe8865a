// Self-healing: start a kill-and-watch (dry-run plan first), watch its phases
// land on a time axis as the agent's event stream reports them, compare runs
// side by side on one scale, and the histogram of times to recover from the
// agent's own /metrics.

import { get, stream } from "./api.js";
import { histogram, seconds, timeline } from "./charts.js";
import { badge, fill, h, redraw, table } from "./dom.js";
import { killPanel } from "./kill.js";

const MAX_COMPARED = 4;
const RECOVER = "podlens_heal_time_to_recover_seconds_bucket";

/** The time-to-recover buckets by target kind, from the Prometheus text. */
export function recoverBuckets(text) {
  const out = {};
  for (const line of text.split("\n")) {
    if (!line.startsWith(RECOVER + "{")) continue;
    const labels = Object.fromEntries([...line.matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    const count = Number(line.slice(line.lastIndexOf("}") + 1).trim().split(/\s+/)[0]);
    (out[labels.target] ||= []).push({ le: labels.le, count });
  }
  return out;
}

const STATE_KIND = { running: "warn", healed: "ok", not_healed: "bad", failed: "bad" };

export function healPage(view, focusId) {
  const me = view.me;
  const policy = me.kill_policy;
  const start = h("section", { id: "start" });
  const runs = h("div", { id: "runs" });
  const compare = h("div", { id: "compare", class: "compare" });
  const hist = h("div", { id: "histogram", class: "drawing" });
  const details = new Map(); // run id -> run (with phases), as drawn
  const following = new Set();
  const chosen = new Set(focusId ? [focusId] : []);
  let metricsDue = 0;

  fill(
    view.main,
    h("h1", { tabindex: "-1" }, "Self-healing"),
    h(
      "p",
      { class: "help", id: "policy" },
      policy.enabled
        ? `Kill-and-watch is on for ${policy.namespaces.length ? `namespaces ${policy.namespaces.join(", ")}` : "no namespace"} and for pods labelled ${policy.opt_in_label}=true; at most ${policy.rate_per_minute} a minute.`
        : "Kill-and-watch is off on this agent (it runs without --enable-kill): runs can be read, none started.",
    ),
    start,
    h("h2", null, "Runs"),
    runs,
    h("h2", null, "Timelines"),
    h("p", { class: "help" }, `Phases since the signal, on one scale; tick up to ${MAX_COMPARED} runs above to put them side by side.`),
    compare,
    h("h2", null, "Time to recover"),
    hist,
  );

  if (me.heal) startForm(view, start);

  const drawCompare = () => {
    const shown = [...chosen].map((id) => details.get(id)).filter(Boolean);
    const scale = Math.max(1, ...shown.flatMap((r) => r.phases.map((p) => p.since_signal_seconds || 0))) * 1.08;
    fill(
      compare,
      shown.length
        ? shown.map((run) =>
            h(
              "figure",
              { class: "run", id: `run-${run.id}`, "data-state": run.state },
              h(
                "figcaption",
                null,
                h("strong", null, `${run.target.namespace}/${run.target.pod} ${run.target.container ? `container ${run.target.container}` : "sandbox"}`),
                " ",
                badge(run.state, STATE_KIND[run.state] || "warn"),
                run.time_to_recover_seconds != null ? ` recovered in ${seconds(run.time_to_recover_seconds)}` : "",
                h("br"),
                h("span", { class: "help" }, `${run.plan.signal} by ${run.requested_by}; ${run.verdict || "watching…"}`),
              ),
              timeline({ ...run, target_label: run.target.container || "sandbox" }, scale),
            ),
          )
        : h("p", null, "No run chosen."),
    );
  };

  const follow = async (id) => {
    if (following.has(id)) return;
    following.add(id);
    try {
      const run = await get(`v1/heal/runs/${id}`, { signal: view.signal });
      details.set(id, run);
      drawCompare();
      if (run.state !== "running") return;
      // Live: each phase as the agent sees it, then the verdict.
      await stream(
        `v1/heal/runs/${id}/events`,
        (event, data) => {
          if (event === "phase") {
            if (!run.phases.some((p) => p.name === data.name)) {
              run.phases.push(data);
              run.phases.sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
            }
          } else if (event === "verdict") {
            Object.assign(run, data);
            metricsDue = 0;
          }
          drawCompare();
        },
        { signal: view.signal },
      );
    } catch (error) {
      view.failed(error);
    } finally {
      following.delete(id);
    }
  };

  const toggle = (id, on) => {
    if (on && chosen.size >= MAX_COMPARED) return false;
    if (on) {
      chosen.add(id);
      follow(id);
    } else chosen.delete(id);
    drawCompare();
    return true;
  };

  for (const id of chosen) follow(id);

  view.every(2000, async () => {
    const list = await get("v1/heal/runs", { signal: view.signal });
    redraw(
      runs,
      table(
        [
          {
            title: "COMPARE",
            cell: (r) =>
              h("input", {
                type: "checkbox",
                id: `pick-${r.id}`,
                "aria-label": `compare run ${r.id}`,
                checked: chosen.has(r.id),
                on: { change: (event) => { if (!toggle(r.id, event.target.checked)) event.target.checked = false; } },
              }),
          },
          { title: "RUN", cell: (r) => h("a", { href: `#/heal/${r.id}` }, r.id) },
          { title: "STARTED", cell: (r) => new Date(r.requested_at).toLocaleTimeString() },
          { title: "POD", cell: (r) => h("a", { href: `#/pod/${r.namespace}/${r.pod}` }, `${r.namespace}/${r.pod}`) },
          { title: "TARGET", cell: (r) => r.target },
          { title: "STATE", cell: (r) => badge(r.state, STATE_KIND[r.state] || "warn") },
          { title: "RECOVERED IN", cell: (r) => seconds(r.time_to_recover_seconds) },
        ],
        list.items,
        { label: "runs" },
      ),
    );
    for (const r of list.items) {
      const known = details.get(r.id);
      if (known && known.state !== r.state && !following.has(r.id)) {
        details.delete(r.id);
        if (chosen.has(r.id)) follow(r.id);
      }
    }
    // The histogram changes only when a run ends: every tenth turn, or at once after a verdict.
    if (metricsDue-- <= 0) {
      metricsDue = 10;
      const text = await get("metrics", { signal: view.signal, accept: "text/plain" });
      fill(hist, histogram(recoverBuckets(text)));
    }
  });
}

function startForm(view, slot) {
  const picker = h("select", { id: "heal-pod" }, h("option", { value: "" }, "choose a pod…"));
  const panel = h("div", { id: "heal-panel" });
  fill(slot, h("h2", null, "Start a run"), h("div", { class: "toolbar" }, h("label", { for: "heal-pod" }, "Pod"), picker), panel);
  get("v1/pods", { signal: view.signal })
    .then((list) => {
      const allowed = new Set(view.me.kill_policy.namespaces);
      const pods = list.items
        .filter((p) => p.status === "Running")
        .sort((a, b) => Number(allowed.has(b.namespace)) - Number(allowed.has(a.namespace)) || `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`));
      for (const p of pods) picker.append(h("option", { value: `${p.namespace}/${p.name}` }, `${p.namespace}/${p.name}`));
    })
    .catch(view.failed);
  picker.addEventListener("change", async () => {
    fill(panel);
    if (!picker.value) return;
    const [namespace, name] = picker.value.split("/");
    try {
      const me = await get(`v1/whoami?namespace=${namespace}`, { signal: view.signal });
      if (!me.namespace_access.kill) {
        fill(panel, h("p", { class: "status-error" }, `You may not delete pods in ${namespace}, which a kill needs.`));
        return;
      }
      const pod = await get(`v1/pods/${namespace}/${name}`, { signal: view.signal });
      fill(panel, killPanel(view, pod));
    } catch (error) {
      view.failed(error);
    }
  });
}

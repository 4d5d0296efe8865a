// The node: what runs it and how the agent sees it, and its pods in
// kubectl's columns, the ones that need attention first, filterable.

import { get } from "./api.js";
import { age, badge, facts, fill, h, redraw, table } from "./dom.js";

function sortPods(items) {
  return [...items].sort(
    (a, b) =>
      Number(b.needs_attention) - Number(a.needs_attention) ||
      a.namespace.localeCompare(b.namespace) ||
      a.name.localeCompare(b.name),
  );
}

function matches(pod, words) {
  const hay = `${pod.namespace} ${pod.name} ${pod.status} ${pod.ready}`.toLowerCase();
  return words.every((w) => hay.includes(w));
}

const COLUMNS = [
  { title: "NAMESPACE", cell: (p) => p.namespace },
  { title: "NAME", cell: (p) => h("a", { href: `#/pod/${p.namespace}/${p.name}`, class: "pod-link" }, p.name) },
  { title: "READY", cell: (p) => p.ready },
  { title: "STATUS", cell: (p) => p.status, class: "status-cell" },
  { title: "RESTARTS", cell: (p) => p.restarts },
  { title: "AGE", cell: (p) => age(p.created_at) },
  { title: "IP", cell: (p) => (p.sandboxes[0] && p.sandboxes[0].ip) || "<none>", class: "wide-only" },
];

export function nodePage(view) {
  const summary = h("section", { class: "cards", "aria-label": "node" });
  const filter = h("input", { id: "pod-filter", type: "search", placeholder: "namespace, name or status", autocomplete: "off" });
  const problemsOnly = h("input", { id: "problems-only", type: "checkbox" });
  const count = h("p", { class: "count", "aria-live": "polite" });
  const pods = h("div", { id: "pods" });
  let last = null;

  const draw = () => {
    if (!last) return;
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = sortPods(last.items).filter((p) => (!problemsOnly.checked || p.needs_attention) && matches(p, words));
    count.textContent = `${shown.length} of ${last.items.length} pods, ${last.items.filter((p) => p.needs_attention).length} need attention`;
    redraw(pods, table(COLUMNS, shown, { label: "pods", rowClass: (p) => (p.needs_attention ? "attention" : null) }));
  };
  filter.addEventListener("input", draw);
  problemsOnly.addEventListener("change", draw);

  fill(
    view.main,
    h("h1", { tabindex: "-1" }, "Node"),
    summary,
    h("h2", null, "Pods"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "pod-filter" }, "Filter"),
      filter,
      h("label", { class: "check" }, problemsOnly, "problems only"),
    ),
    count,
    pods,
  );

  view.every(2000, async () => {
    // One after the other: at most one request in flight, two every two seconds.
    const node = await get("v1/node", { signal: view.signal });
    last = await get("v1/pods", { signal: view.signal });
    fill(summary, nodeCards(node));
    view.main.querySelector("h1").textContent = `Node ${node.node_name}`;
    draw();
    // The browser's own timing of "the pods are on screen", for bench_ui.
    if (!performance.getEntriesByName("podlens:pods-drawn").length) performance.mark("podlens:pods-drawn");
  });
}

function nodeCards(node) {
  const r = node.runtime;
  const c = node.capabilities;
  const n = node.counts;
  return [
    h(
      "article",
      { class: "card" },
      h("h3", null, "Runtime"),
      facts([
        ["state", r.connected ? badge("connected", "ok") : badge(`down: ${r.reason || "unknown"}`, "bad")],
        ["runtime", [r.name, r.version].filter(Boolean).join(" ")],
        ["CRI API", r.cri_api_version],
        ["endpoint", r.endpoint],
        ["pause processes", c.pause_processes],
      ]),
    ),
    h(
      "article",
      { class: "card" },
      h("h3", null, "API server"),
      facts([
        ["state", node.api.state === "ok" ? badge("ok", "ok") : badge(node.api.state, "bad")],
        ["detail", node.api.detail],
        ["pods bound here", String(node.api.pods_on_node)],
      ]),
    ),
    h(
      "article",
      { class: "card" },
      h("h3", null, "Changes"),
      facts([
        ["source", c.change_source],
        ["why", c.change_source_reason],
        ["relist every", `${c.relist_interval_seconds} s`],
        ["exit notifications", c.pidfd_exit_notifications ? "pidfd" : c.pidfd_unavailable],
      ]),
    ),
    h(
      "article",
      { class: "card" },
      h("h3", null, "Counts"),
      facts([
        ["pods", String(n.pods)],
        ["sandboxes", `${n.sandboxes_ready} ready of ${n.sandboxes}`],
        ["containers", `${n.containers_running} running, ${n.containers_exited} exited, ${n.containers} in all`],
      ]),
    ),
  ];
}

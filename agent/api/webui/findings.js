// The node's findings, most severe first: what was found, the evidence and
// where it comes from, the likely cause, what to run next; each links to its pod.

import { get } from "./api.js";
import { age, badge, fill, h, redraw, table } from "./dom.js";

const SEVERITY_KIND = { critical: "bad", error: "bad", warning: "warn", info: "ok" };

export function findingCard(f, linkPod = true) {
  return h(
    "article",
    { class: `finding severity-${f.severity}`, "data-rule": f.rule, "data-pod": `${f.namespace}/${f.pod}` },
    h(
      "h3",
      null,
      badge(f.severity, SEVERITY_KIND[f.severity] || "warn"),
      " ",
      h("span", { class: "rule" }, f.rule),
      " ",
      linkPod ? h("a", { href: `#/pod/${f.namespace}/${f.pod}`, class: "pod-link" }, `${f.namespace}/${f.pod}`) : null,
      f.container ? ` container ${f.container}` : null,
    ),
    h("p", { class: "summary" }, f.summary),
    f.since ? h("p", { class: "help" }, `since ${f.since} (${age(f.since)} ago)`) : null,
    table(
      [
        { title: "FROM", cell: (e) => e.kind },
        { title: "WHAT", cell: (e) => e.label },
        { title: "VALUE", cell: (e) => e.value, class: "message" },
      ],
      f.evidence,
      { label: `evidence for ${f.rule}` },
    ),
    h("p", null, h("strong", null, "Likely cause: "), f.cause),
    f.next_steps.length ? h("ol", { class: "next-steps" }, f.next_steps.map((step) => h("li", null, h("code", null, step)))) : null,
  );
}

export function findingsPage(view) {
  const filter = h("input", { id: "finding-filter", type: "search", placeholder: "rule, pod or text", autocomplete: "off" });
  const count = h("p", { class: "count", "aria-live": "polite" });
  const list = h("div", { id: "findings" });
  let last = null;
  const draw = () => {
    if (!last) return;
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const shown = last.items.filter((f) => {
      const hay = `${f.rule} ${f.namespace}/${f.pod} ${f.container || ""} ${f.summary}`.toLowerCase();
      return words.every((w) => hay.includes(w));
    });
    count.textContent = `${shown.length} findings on ${last.pods_with_findings} of ${last.pods_checked} pods`;
    redraw(list, shown.length ? shown.map((f) => findingCard(f)) : h("p", null, "Nothing found."));
  };
  filter.addEventListener("input", draw);
  fill(
    view.main,
    h("h1", { tabindex: "-1" }, "Findings"),
    h("div", { class: "toolbar" }, h("label", { for: "finding-filter" }, "Filter"), filter),
    count,
    list,
  );
  if (!view.me.read_logs) {
    fill(list, h("p", { class: "status-error" }, "Findings quote the containers' log lines: they need get nodes/podlens-logs and get pods/log in every namespace."));
    return;
  }
  // Diagnosing every pod costs more than listing them: every five seconds.
  view.every(5000, async () => {
    last = await get("v1/diagnostics", { signal: view.signal });
    draw();
  });
}

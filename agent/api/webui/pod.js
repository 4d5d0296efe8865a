// One pod: kubectl's columns, its sandboxes with pause PIDs, its containers
// with roles, PIDs and attempts, what they share (drawn), its events, a log
// tail per container (the previous attempt's too), its findings, and the
// kill-and-watch controls for a caller who may use them.

import { get } from "./api.js";
import { sharing } from "./charts.js";
import { age, badge, facts, fill, h, redraw, shortId, table } from "./dom.js";
import { findingCard } from "./findings.js";
import { killPanel } from "./kill.js";

export function podPage(view, namespace, name) {
  const base = `v1/pods/${namespace}/${name}`;
  const head = h("section", { id: "pod-head" });
  const kill = h("div", { id: "kill-slot" });
  const drawing = h("div", { id: "sharing", class: "drawing" });
  const sandboxes = h("div", { id: "sandboxes" });
  const containers = h("div", { id: "containers" });
  const mismatches = h("div", { id: "mismatches" });
  const events = h("div", { id: "events" });
  const logs = h("section", { id: "logs", "aria-live": "polite" });
  const findings = h("div", { id: "pod-findings" });
  let access = null;
  let killShown = false;

  fill(
    view.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/node" }, "Node"), " / ", `${namespace}`),
    h("h1", { tabindex: "-1" }, `Pod ${namespace}/${name}`),
    head,
    kill,
    h("h2", null, "What the containers share"),
    h(
      "p",
      { class: "help" },
      "A line joins the processes in one namespace: filled dots share the pause process's, hollow ones have their own; " +
        "squares mount the volume (hollow: read-only). “the node's”: the pause process shares it with the whole node.",
    ),
    drawing,
    h("h2", null, "Sandboxes"),
    sandboxes,
    h("h2", null, "Containers"),
    containers,
    logs,
    mismatches,
    h("h2", null, "Findings"),
    findings,
    h("h2", null, "Events"),
    events,
  );

  const showLog = async (container, previous) => {
    fill(logs, h("h2", null, `Log of ${container}${previous ? " (previous attempt)" : ""}`), h("p", null, "reading…"));
    try {
      const answer = await get(`${base}/logs?container=${encodeURIComponent(container)}&tail=200${previous ? "&previous=true" : ""}`, { signal: view.signal });
      fill(
        logs,
        h("h2", { id: "log-title", tabindex: "-1" }, `Log of ${container}, attempt ${answer.attempt ?? "?"}${previous ? " (previous)" : ""}`),
        answer.note ? h("p", { class: "help" }, answer.note) : null,
        h("pre", { class: "log", id: "log-text", tabindex: "0" }, answer.lines.map((l) => `${l.text}${l.cut ? " [cut]" : ""}\n`).join("")),
      );
      logs.querySelector("h2").focus();
    } catch (error) {
      fill(logs, h("h2", null, `Log of ${container}`), h("p", { class: "status-error" }, `${error.status || ""} ${error.message}`));
    }
  };

  const containerColumns = [
    { title: "NAME", cell: (c) => c.name },
    { title: "ROLE", cell: (c) => c.role || "runtime only" },
    { title: "STATE", cell: (c) => c.state },
    { title: "READY", cell: (c) => (c.ready === null ? "" : c.ready ? "yes" : "no") },
    { title: "RESTARTS", cell: (c) => String(c.restart_count) },
    { title: "PID", cell: (c) => (c.pid ? String(c.pid) : "") },
    { title: "ATTEMPTS", cell: (c) => c.attempts.map((a) => `#${a.attempt} ${a.state}${a.exit_code !== null ? ` (${a.exit_code})` : ""}`).join(", ") },
    { title: "EXIT / REASON", cell: (c) => [c.exit_code !== null ? String(c.exit_code) : "", c.reason || ""].filter(Boolean).join(" ") },
    { title: "IMAGE", cell: (c) => c.image || "", class: "wide-only" },
    {
      title: "LOG",
      cell: (c) =>
        access && access.read_logs
          ? [
              h("button", { type: "button", id: `log-${c.name}`, on: { click: () => showLog(c.name, false) } }, "tail"),
              c.restart_count > 0 || c.attempts.length > 1
                ? h("button", { type: "button", id: `prev-${c.name}`, on: { click: () => showLog(c.name, true) } }, "previous")
                : null,
            ]
          : "",
    },
  ];

  const loadFindings = async () => {
    if (!access || !access.read_logs) {
      fill(findings, h("p", { class: "help" }, "Findings quote log lines: they need get pods/log in this namespace."));
      return;
    }
    try {
      const answer = await get(`${base}/diagnosis`, { signal: view.signal });
      fill(findings, answer.findings.length ? answer.findings.map((f) => findingCard(f, false)) : h("p", null, "No findings: nothing looks wrong."));
    } catch (error) {
      fill(findings, h("p", { class: "status-error" }, error.message));
    }
  };

  (async () => {
    try {
      const me = await get(`v1/whoami?namespace=${namespace}`, { signal: view.signal });
      access = me.namespace_access;
      access.heal = me.heal;
    } catch (error) {
      view.failed(error);
      access = { read_logs: false, kill: false };
    }
    loadFindings();
    view.every(2000, async () => {
      const pod = await get(base, { signal: view.signal });
      fill(
        head,
        facts([
          ["READY", pod.ready],
          ["STATUS", pod.needs_attention ? badge(pod.status, "bad") : pod.status],
          ["RESTARTS", pod.restarts],
          ["AGE", age(pod.created_at)],
          ["phase", pod.phase],
          ["API", pod.api],
          ["sharing", pod.namespace_sharing_unknown],
        ]),
      );
      if (access.kill && !killShown) {
        killShown = true;
        fill(kill, killPanel(view, pod));
      }
      fill(drawing, sharing(pod));
      redraw(
        sandboxes,
        table(
          [
            { title: "POD ID", cell: (sb) => shortId(sb.id) },
            { title: "STATE", cell: (sb) => sb.state },
            { title: "ATTEMPT", cell: (sb) => String(sb.attempt) },
            { title: "PAUSE PID", cell: (sb) => (sb.pause_pid ? String(sb.pause_pid) : sb.pause_pid_note || "") },
            { title: "IP", cell: (sb) => sb.ip || "" },
            { title: "NETWORK", cell: (sb) => sb.network_mode || "", class: "wide-only" },
            { title: "CONTAINERS", cell: (sb) => String(sb.container_count) },
          ],
          pod.sandboxes,
          { label: "sandboxes" },
        ),
      );
      redraw(containers, table(containerColumns, pod.containers, { label: "containers" }));
      fill(
        mismatches,
        pod.mismatches.length
          ? [h("h2", null, "Runtime and API disagree"), h("ul", null, pod.mismatches.map((m) => h("li", null, `${m.kind}: ${m.message}`)))]
          : null,
      );
      redraw(
        events,
        pod.events_error
          ? h("p", { class: "status-error" }, pod.events_error)
          : table(
              [
                { title: "LAST SEEN", cell: (e) => age(e.last_seen) },
                { title: "TYPE", cell: (e) => e.type || "" },
                { title: "REASON", cell: (e) => e.reason || "" },
                { title: "MESSAGE", cell: (e) => e.message || "", class: "message" },
                { title: "COUNT", cell: (e) => (e.count === null ? "" : String(e.count)) },
                { title: "FROM", cell: (e) => e.source || "", class: "wide-only" },
              ],
              pod.events || [],
              { label: "events" },
            ),
      );
    });
  })();
}

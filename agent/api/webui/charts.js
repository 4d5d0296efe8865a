// Drawings in SVG: a run's phases on a time axis, the histogram of times to
// recover, and what a pod's containers share. Text goes in as text nodes.

import { s } from "./dom.js";

const PHASE_ROW = 22;

/** Round tick steps (1, 2, 5 x 10^n) covering 0..max. */
export function ticks(max, count = 5) {
  const raw = max / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw || 1));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((m) => m >= raw) || raw;
  const out = [];
  for (let t = 0; t <= max + step * 1e-9; t += step) out.push(Number(t.toPrecision(6)));
  return out;
}

export function seconds(value) {
  if (value === null || value === undefined) return "";
  return value < 1 ? `${(value * 1000).toFixed(0)} ms` : `${value.toFixed(2)} s`;
}

/**
 * One run's timeline: a row per phase in the order they happened, a mark at
 * its time since the signal. ``scale`` is the axis end in seconds, shared by
 * runs drawn side by side so they compare at a glance.
 */
export function timeline(run, scale) {
  const phases = run.phases || [];
  const width = 560;
  const left = 180;
  const right = 70;
  const top = 8;
  const plot = width - left - right;
  const height = top + Math.max(phases.length, 1) * PHASE_ROW + 34;
  const x = (t) => left + (Math.min(t, scale) / scale) * plot;
  const axisY = top + Math.max(phases.length, 1) * PHASE_ROW + 6;
  const label = `${run.target_label || "run"}: ${phases.length} phases` +
    (run.time_to_recover_seconds != null ? `, recovered in ${seconds(run.time_to_recover_seconds)}` : "");
  return s(
    "svg",
    { class: "timeline", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label, "data-run": run.id },
    s("title", null, label),
    ticks(scale).map((t) =>
      s(
        "g",
        { class: "tick" },
        s("line", { x1: x(t), x2: x(t), y1: top, y2: axisY, class: "grid" }),
        s("text", { x: x(t), y: axisY + 16, "text-anchor": "middle" }, `${t}s`),
      ),
    ),
    s("line", { x1: left, x2: left + plot, y1: axisY, y2: axisY, class: "axis" }),
    phases.map((phase, i) => {
      const y = top + i * PHASE_ROW + PHASE_ROW / 2;
      const at = phase.since_signal_seconds || 0;
      const runtime = phase.name.startsWith("runtime_");
      const api = phase.name.startsWith("api_");
      const kind = runtime ? "runtime" : api ? "api" : "agent";
      return s(
        "g",
        { class: `phase phase-${kind}`, "data-phase": phase.name },
        s("text", { x: left - 8, y: y + 4, "text-anchor": "end", class: "phase-name" }, phase.name),
        s("line", { x1: left, x2: x(at), y1: y, y2: y, class: "phase-bar" }),
        s("circle", { cx: x(at), cy: y, r: 5, class: "phase-mark" }),
        s("text", { x: x(at) + 9, y: y + 4, class: "phase-time" }, seconds(at)),
      );
    }),
  );
}

/**
 * The time-to-recover histogram from the agent's own Prometheus series:
 * ``buckets`` maps a target kind to [{le, count}] (cumulative, as exposed).
 */
export function histogram(buckets) {
  const kinds = Object.keys(buckets).sort();
  const width = 560;
  const height = 220;
  const left = 40;
  const bottom = 40;
  const top = 10;
  // Per-bucket counts from the cumulative ones.
  const series = kinds.map((kind) => {
    let previous = 0;
    return buckets[kind].map(({ le, count }) => {
      const own = count - previous;
      previous = count;
      return { le, count: own };
    });
  });
  const bounds = (series[0] || []).map((b) => b.le);
  const used = bounds.map((_, i) => series.some((s_) => s_[i] && s_[i].count > 0));
  const first = Math.max(0, used.indexOf(true) - 1);
  const last = Math.min(bounds.length - 1, used.lastIndexOf(true) + 1);
  const shown = used.includes(true) ? bounds.slice(first, last + 1) : [];
  const max = Math.max(1, ...series.flat().map((b) => b.count));
  const slot = shown.length ? (width - left - 10) / shown.length : 1;
  const barWidth = Math.max(4, (slot - 6) / Math.max(kinds.length, 1));
  const y = (n) => top + (height - top - bottom) * (1 - n / max);
  const total = series.flat().reduce((sum, b) => sum + b.count, 0);
  const label = total
    ? `time to recover: ${total} runs, ${kinds.join(" and ")}`
    : "time to recover: no healed runs yet";
  return s(
    "svg",
    { class: "histogram", viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": label },
    s("title", null, label),
    s("line", { x1: left, x2: width - 10, y1: y(0), y2: y(0), class: "axis" }),
    s("text", { x: left - 6, y: y(max) + 4, "text-anchor": "end" }, String(max)),
    s("text", { x: left - 6, y: y(0) + 4, "text-anchor": "end" }, "0"),
    shown.length
      ? shown.map((le, j) => {
          const i = first + j;
          return s(
            "g",
            { class: "bucket", "data-le": le },
            kinds.map((kind, k) => {
              const count = series[k][i].count;
              const bx = left + j * slot + 3 + k * barWidth;
              return s(
                "rect",
                { x: bx, y: y(count), width: barWidth - 1, height: y(0) - y(count), class: `bar bar-${kind}`, "data-count": count },
                s("title", null, `${kind}: ${count} runs up to ${le} s`),
              );
            }),
            s("text", { x: left + j * slot + slot / 2, y: height - bottom + 16, "text-anchor": "middle" }, le === "+Inf" ? "more" : `≤${le}s`),
          );
        })
      : s("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no healed runs yet"),
    kinds.map((kind, k) =>
      s(
        "g",
        { class: "legend" },
        s("rect", { x: left + k * 120, y: height - 14, width: 10, height: 10, class: `bar bar-${kind}` }),
        s("text", { x: left + k * 120 + 14, y: height - 5 }, kind),
      ),
    ),
  );
}

const NAMESPACE_ORDER = ["net", "ipc", "uts", "pid", "mnt", "cgroup", "user", "time"];

/**
 * What a pod's containers share, drawn: a column for the pause process and
 * each container, a row per namespace kind and per volume; a line joins the
 * members of each row that share it.
 */
export function sharing(pod) {
  const containers = pod.containers.filter((c) => c.role !== "ephemeral");
  const kinds = new Set();
  for (const c of containers) for (const kind of Object.keys(c.shares_with_pause || {})) kinds.add(kind);
  const namespaceRows = [...kinds].sort((a, b) => NAMESPACE_ORDER.indexOf(a) - NAMESPACE_ORDER.indexOf(b));
  const volumes = pod.volumes || [];
  const hasPause = (pod.sandboxes || []).some((sb) => sb.pause_pid);
  const columns = [hasPause ? "pause" : null, ...containers.map((c) => c.name)].filter(Boolean);
  const colWidth = 96;
  const left = 210;
  const top = 56;
  const row = 26;
  const rows = namespaceRows.length + volumes.length;
  const width = left + columns.length * colWidth + 20;
  const height = top + Math.max(rows, 1) * row + 12;
  const cx = (i) => left + i * colWidth + colWidth / 2;
  const hostWide = new Set(pod.pause_shares_with_host || []);
  const label = `${pod.name}: ${namespaceRows.length} namespace kinds and ${volumes.length} volumes across ${columns.length} processes`;
  const parts = [];
  columns.forEach((name, i) => {
    const c = containers.find((x) => x.name === name);
    parts.push(
      s(
        "g",
        { class: `column ${name === "pause" && hasPause ? "column-pause" : ""}` },
        s("text", { x: cx(i), y: 18, "text-anchor": "middle", class: "column-name" }, name),
        s(
          "text",
          { x: cx(i), y: 34, "text-anchor": "middle", class: "column-note" },
          name === "pause" && hasPause ? `pid ${pod.sandboxes.find((sb) => sb.pause_pid).pause_pid}` : c && c.pid ? `pid ${c.pid}` : c ? c.state : "",
        ),
        s("line", { x1: cx(i), x2: cx(i), y1: top - 10, y2: height - 8, class: "column-line" }),
      ),
    );
  });
  namespaceRows.forEach((kind, r) => {
    const y = top + r * row + row / 2;
    const members = [];
    const marks = [];
    columns.forEach((name, i) => {
      if (name === "pause" && hasPause) {
        members.push(i);
        marks.push(s("circle", { cx: cx(i), cy: y, r: 6, class: "mark shared" }));
        return;
      }
      const c = containers.find((x) => x.name === name);
      // A container with no process has no namespaces to share: nothing to draw.
      if (!c || !c.pid) return;
      const shares = c.shares_with_pause ? c.shares_with_pause[kind] : undefined;
      if (shares === true) members.push(i);
      marks.push(
        shares === undefined || shares === null
          ? s("text", { x: cx(i), y: y + 4, "text-anchor": "middle", class: "mark unknown" }, "?", s("title", null, pod.namespace_sharing_unknown || "unknown"))
          : s("circle", { cx: cx(i), cy: y, r: 6, class: shares ? "mark shared" : "mark own" }, s("title", null, `${name}: ${shares ? "shares" : "own"} ${kind} namespace`)),
      );
    });
    parts.push(
      s(
        "g",
        { class: "share-row", "data-namespace": kind, "data-members": members.map((i) => columns[i]).join(" ") },
        s("text", { x: left - 10, y: y + 4, "text-anchor": "end", class: "row-name" }, hostWide.has(kind) ? `${kind} (the node's)` : kind),
        members.length > 1 ? s("line", { x1: cx(Math.min(...members)), x2: cx(Math.max(...members)), y1: y, y2: y, class: "share-line" }) : null,
        marks,
      ),
    );
  });
  volumes.forEach((volume, v) => {
    const y = top + (namespaceRows.length + v) * row + row / 2;
    const members = [];
    const marks = [];
    columns.forEach((name, i) => {
      const use = volume.mounted_by.find((u) => u.container === name);
      if (!use) return;
      members.push(i);
      marks.push(
        s("rect", { x: cx(i) - 6, y: y - 6, width: 12, height: 12, class: use.read_only ? "mark volume ro" : "mark volume" },
          s("title", null, `${name} mounts ${volume.name} at ${use.mount_path}${use.read_only ? " (read-only)" : ""}`)),
      );
    });
    parts.push(
      s(
        "g",
        { class: "share-row volume-row", "data-volume": volume.name, "data-members": members.map((i) => columns[i]).join(" ") },
        s("text", { x: left - 10, y: y + 4, "text-anchor": "end", class: "row-name" }, `${volume.name} (${volume.kind})`),
        members.length > 1 ? s("line", { x1: cx(Math.min(...members)), x2: cx(Math.max(...members)), y1: y, y2: y, class: "share-line volume-line" }) : null,
        marks,
      ),
    );
  });
  return s(
    "svg",
    { class: "sharing", viewBox: `0 0 ${width} ${height}`, width, role: "img", "aria-label": label },
    s("title", null, label),
    parts,
  );
}

// Starting a kill-and-watch: the dry-run plan first, then the run itself.
// Shown only to a caller the agent says may kill in the pod's namespace; the
// agent checks again either way.

import { post } from "./api.js";
import { fill, h } from "./dom.js";

export function killPanel(view, pod) {
  const targets = pod.containers.filter((c) => c.role !== "init" && c.role !== "ephemeral" && c.state === "running");
  const target = h(
    "select",
    { id: "kill-target" },
    targets.map((c) => h("option", { value: `container:${c.name}` }, `container ${c.name} (pid ${c.pid || "?"})`)),
    (pod.sandboxes || []).some((sb) => sb.state === "ready" && sb.pause_pid)
      ? h("option", { value: "sandbox" }, `the pod's sandbox (pause pid ${pod.sandboxes.find((sb) => sb.pause_pid).pause_pid})`)
      : null,
  );
  const signal = h("select", { id: "kill-signal" }, h("option", { value: "SIGKILL" }, "SIGKILL"), h("option", { value: "SIGTERM" }, "SIGTERM"));
  const plan = h("div", { class: "plan", "aria-live": "polite" });
  const go = h("button", { type: "button", id: "kill-go", class: "danger", disabled: true }, "Kill and watch");
  const planButton = h("button", { type: "button", id: "kill-plan" }, "Show the plan (dry run)");
  let planned = null;

  const body = () => {
    const [kind, name] = target.value.split(":");
    return kind === "sandbox" ? { sandbox: true, signal: signal.value } : { container: name, signal: signal.value };
  };
  const reset = () => {
    planned = null;
    go.disabled = true;
    fill(plan);
  };
  target.addEventListener("change", reset);
  signal.addEventListener("change", reset);

  planButton.addEventListener("click", async () => {
    reset();
    try {
      const answer = await post(`v1/pods/${pod.namespace}/${pod.name}/kill-and-watch`, { ...body(), dry_run: true }, { signal: view.signal });
      planned = JSON.stringify(body());
      const p = answer.plan;
      fill(
        plan,
        h("h3", null, "Plan"),
        h(
          "p",
          null,
          `${p.signal} to ${p.target.kind === "sandbox" ? "the pause process" : `container ${p.target.container}`}, pid ${p.target.pid}; ` +
            `kubelet should start attempt ${p.expected_attempt} after about ${p.expected_delay_seconds} s (${p.expected_delay_reason}); ` +
            `watched for up to ${p.timeout_seconds} s.`,
        ),
        h("ol", { id: "plan-steps" }, p.steps.map((step) => h("li", null, step))),
      );
      go.disabled = false;
      go.focus();
    } catch (error) {
      fill(plan, h("p", { class: "status-error", id: "kill-refused" }, `${error.status || ""} ${error.message}`));
    }
  });

  go.addEventListener("click", async () => {
    if (planned !== JSON.stringify(body())) return reset();
    go.disabled = true;
    try {
      const answer = await post(`v1/pods/${pod.namespace}/${pod.name}/kill-and-watch`, body(), { signal: view.signal });
      location.hash = `#/heal/${answer.id}`;
    } catch (error) {
      fill(plan, h("p", { class: "status-error", id: "kill-refused" }, `${error.status || ""} ${error.message}`));
    }
  });

  if (!targets.length && !target.options.length) {
    return h("section", { class: "kill", id: "kill" }, h("h2", null, "Kill and watch"), h("p", null, "Nothing running to kill."));
  }
  return h(
    "section",
    { class: "kill", id: "kill", "aria-label": "kill and watch" },
    h("h2", null, "Kill and watch"),
    h(
      "div",
      { class: "toolbar" },
      h("label", { for: "kill-target" }, "Target"),
      target,
      h("label", { for: "kill-signal" }, "Signal"),
      signal,
      planButton,
      go,
    ),
    plan,
  );
}

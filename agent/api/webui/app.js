// The page: signs in once per tab, then routes #/node, #/pod/NS/NAME,
// #/findings and #/heal[/RUN] to their views. A view refreshes through one
// loop at a time (never more than a request a second, none while the tab is
// hidden) or follows an event stream; leaving a view stops both.

import { ApiError, get, token } from "./api.js";
import { fill, h } from "./dom.js";
import { findingsPage } from "./findings.js";
import { healPage } from "./heal.js";
import { nodePage } from "./node.js";
import { podPage } from "./pod.js";

const main = document.getElementById("main");
const statusLine = document.getElementById("status");
const who = document.getElementById("who");
const signOut = document.getElementById("sign-out");
const nav = document.getElementById("nav");

let current = null; // the AbortController of the view on screen
const identity = { me: null };

function say(message, kind = "info") {
  statusLine.className = `status status-${kind}`;
  statusLine.textContent = message || "";
}

/** Answer an API error where the user looks: sign in again on 401. */
function failed(error) {
  if (error.name === "AbortError") return;
  if (error instanceof ApiError && error.status === 401) {
    token.clear();
    identity.me = null;
    showSignIn(error.message);
    return;
  }
  say(error instanceof ApiError ? `${error.status} ${error.kind}: ${error.message}` : String(error), "error");
}

/**
 * Run ``load`` now and every ``ms`` after it finishes (one request in flight
 * per loop), paused while the tab is hidden, until the view is left.
 */
function every(ms, load, signal) {
  let timer = null;
  const tick = async () => {
    timer = null;
    if (signal.aborted) return;
    if (!document.hidden) {
      try {
        await load();
        if (statusLine.classList.contains("status-error")) say("");
      } catch (error) {
        failed(error);
      }
    }
    if (!signal.aborted) timer = setTimeout(tick, ms);
  };
  signal.addEventListener("abort", () => timer && clearTimeout(timer));
  tick();
}

function showSignIn(reason) {
  if (current) current.abort();
  who.textContent = "";
  signOut.hidden = true;
  const input = h("input", {
    id: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
    "aria-describedby": "token-help",
  });
  const form = h(
    "form",
    { class: "sign-in", on: { submit: (event) => { event.preventDefault(); token.set(input.value); input.value = ""; start(); } } },
    h("h1", { tabindex: "-1" }, "Sign in to podlens"),
    reason ? h("p", { class: "status-error" }, reason) : null,
    h("label", { for: "token" }, "Bearer token"),
    input,
    h(
      "p",
      { id: "token-help", class: "help" },
      "A token with the audience podlens, e.g. ",
      h("code", null, "kubectl create token NAME --audience podlens"),
      ". It is kept for this tab only and sent with each request as Authorization.",
    ),
    h("button", { type: "submit" }, "Sign in"),
  );
  fill(main, form);
  input.focus();
}

async function start() {
  try {
    identity.me = await get("v1/whoami");
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      // Asked without a token first: the sign-in form, without a complaint.
      const hadToken = Boolean(token.get());
      token.clear();
      showSignIn(hadToken ? error.message : "");
      return;
    }
    if (error instanceof ApiError && error.status === 403) {
      showSignIn(`${error.message}. Another token?`);
      token.clear();
      return;
    }
    say(String(error.message || error), "error");
    return;
  }
  who.textContent = identity.me.user;
  signOut.hidden = identity.me.via !== "token";
  route();
}

const PAGES = [
  [/^#\/node$/, () => nodePage],
  [/^#\/pod\/([a-z0-9-]+)\/([a-z0-9.-]+)$/, () => podPage],
  [/^#\/findings$/, () => findingsPage],
  [/^#\/heal(?:\/([0-9a-f]{12}))?$/, () => healPage],
];

function route() {
  if (!identity.me) return;
  if (current) current.abort();
  current = new AbortController();
  const hash = location.hash || "#/node";
  say("");
  let page = null;
  let params = [];
  for (const [pattern, view] of PAGES) {
    const match = pattern.exec(hash);
    if (match) {
      page = view();
      params = match.slice(1).filter((p) => p !== undefined);
      break;
    }
  }
  for (const link of nav.querySelectorAll("a")) {
    const here = hash.startsWith(link.getAttribute("href")) || (hash.startsWith("#/pod/") && link.getAttribute("href") === "#/node");
    if (here) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (!page) {
    fill(main, h("h1", { tabindex: "-1" }, "Nothing here"), h("p", null, h("a", { href: "#/node" }, "Back to the node")));
    main.querySelector("h1").focus();
    return;
  }
  const view = { main, me: identity.me, signal: current.signal, say, failed, every: (ms, load) => every(ms, load, current.signal) };
  fill(main);
  page(view, ...params);
  const heading = main.querySelector("h1");
  // Keyboard and screen-reader users land on the new view, not the old link.
  if (heading && document.activeElement !== document.getElementById("token")) heading.focus({ preventScroll: true });
}

signOut.addEventListener("click", () => {
  token.clear();
  identity.me = null;
  showSignIn("");
});
// The skip link moves the focus without touching the fragment, which holds the route.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  main.focus();
});
window.addEventListener("hashchange", route);
start();

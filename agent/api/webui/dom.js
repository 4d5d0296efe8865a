// Building the page: every piece of data goes in as text (a Text node or an
// attribute value), never as markup, so a pod name or an event message that
// looks like HTML stays text. Nothing here parses a string as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function append(parent, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "on") {
      for (const [event, handler] of Object.entries(value)) el.addEventListener(event, handler);
    } else if (key.startsWith("on")) {
      throw new Error(`event handlers go under "on", not ${key}`);
    } else if (key === "href" && !String(value).startsWith("#") && !String(value).startsWith("/")) {
      throw new Error("links point inside the page only");
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
  return el;
}

/** An HTML element: h("td", {class: "x"}, "text", child, ...). */
export function h(tag, attrs, ...children) {
  const el = apply(document.createElement(tag), attrs);
  append(el, children);
  return el;
}

/** An SVG element, the same way. */
export function s(tag, attrs, ...children) {
  const el = apply(document.createElementNS(SVG_NS, tag), attrs);
  append(el, children);
  return el;
}

/** Replace what ``el`` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A table: columns [{title, cell(row) -> content, class?}], one row per item. */
export function table(columns, rows, { caption, rowClass, label } = {}) {
  return h(
    "div",
    { class: "table-wrap", tabindex: "0", role: "region", "aria-label": label || caption || "table" },
    h(
      "table",
      null,
      caption ? h("caption", null, caption) : null,
      h("thead", null, h("tr", null, columns.map((c) => h("th", { scope: "col", class: c.class }, c.title)))),
      h(
        "tbody",
        null,
        rows.map((row) =>
          h("tr", { class: rowClass ? rowClass(row) : null }, columns.map((c) => h("td", { class: c.class }, c.cell(row)))),
        ),
      ),
    ),
  );
}

/** kubectl's AGE (apimachinery's HumanDuration): "90s", "2m30s", "5h3m", "3d4h". */
export function age(iso, now = Date.now()) {
  if (!iso) return "<unknown>";
  const seconds = Math.max(0, Math.floor((now - Date.parse(iso)) / 1000));
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return `${minutes}m${seconds % 60 ? `${seconds % 60}s` : ""}`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return `${hours}h${minutes % 60 ? `${minutes % 60}m` : ""}`;
  if (hours < 48) return `${hours}h`;
  const days = Math.floor(hours / 24);
  if (days < 8) return `${days}d${hours % 24 ? `${hours % 24}h` : ""}`;
  if (days < 365 * 2) return `${days}d`;
  const years = Math.floor(days / 365);
  if (days < 365 * 8 && days % 365) return `${years}y${days % 365}d`;
  return `${years}y`;
}

export function shortId(id) {
  return id ? id.slice(0, 13) : "";
}

/** A definition list from [term, value] pairs; empty values are left out. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== null && value !== undefined && value !== "")
      .map(([term, value]) => [h("dt", null, term), h("dd", null, value)]),
  );
}

export function badge(text, kind) {
  return h("span", { class: `badge badge-${kind}` }, text);
}

/** Replace what ``el`` holds, keeping the keyboard focus on the same link or control. */
export function redraw(el, ...children) {
  const active = document.activeElement;
  const key = active && el.contains(active) ? active.getAttribute("href") || active.id : null;
  fill(el, ...children);
  if (!key) return;
  const again = [...el.querySelectorAll("[href], [id]")].find((e) => (e.getAttribute("href") || e.id) === key);
  if (again) again.focus({ preventScroll: true });
}

// vrouter ui: marks up the lab's drawing (topology/graph's SVG, inline in
// the page) with the samples the server streams (/api/events), and shows a
// node's routes and BGP status when it is clicked (/api/nodes/NAME).
"use strict";

const svgNS = "http://www.w3.org/2000/svg";
const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

// attr matches an attribute value exactly, whatever it holds.
const attr = (name, value) => `[${name}="${CSS.escape(value)}"]`;

function fmtRate(r) {
  if (r >= 1e6) return (r / 1e6).toFixed(1) + "M";
  if (r >= 1e3) return (r / 1e3).toFixed(1) + "k";
  return r >= 10 || r === 0 ? Math.round(r).toString() : r.toFixed(1);
}

// rateLabel returns the text element showing a link's rates, made the
// first time beside the middle of the link's line.
function rateLabel(g) {
  let t = $("text.rate", g);
  if (t) return t;
  const line = $("line", g), name = $("text", g);
  const x = +line.getAttribute("x1"), y1 = +line.getAttribute("y1"), y2 = +line.getAttribute("y2");
  const anchor = name ? name.getAttribute("text-anchor") || "start" : "start";
  t = document.createElementNS(svgNS, "text");
  t.setAttribute("class", "rate");
  t.setAttribute("x", anchor === "end" ? x - 4 : x + 4);
  t.setAttribute("y", (y1 + y2) / 2 + 4);
  t.setAttribute("text-anchor", anchor);
  g.appendChild(t);
  return t;
}

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function applySessions(sessions) {
  const body = $("#sessions tbody");
  body.replaceChildren();
  for (const s of sessions) {
    const p = $(`path.session${attr("data-a", s.a)}${attr("data-b", s.b)}`);
    if (p) {
      p.dataset.state = s.state;
      p.classList.toggle("notup", s.state !== "Established" && s.state !== "unknown");
      const title = $("title", p);
      if (title) title.textContent = `${s.a} – ${s.b}: ${s.type}, ${s.state}`;
    }
    const tr = document.createElement("tr");
    tr.dataset.a = s.a;
    tr.dataset.b = s.b;
    tr.dataset.state = s.state;
    cell(tr, s.a);
    cell(tr, s.b);
    cell(tr, s.type);
    cell(tr, s.state, s.state === "Established" ? "state-Established" : "bad");
    body.appendChild(tr);
  }
}

function applyLinks(links) {
  const body = $("#links tbody");
  body.replaceChildren();
  for (const l of links) {
    const up = l.known ? (l.up ? "up" : "down") : "unknown";
    const g = $(`g.link${attr("data-node", l.node)}${attr("data-network", l.network)}`);
    if (g) {
      g.dataset.up = l.known ? String(l.up) : "unknown";
      g.dataset.impaired = String(!!l.impairment);
      const t = rateLabel(g);
      if (!l.known) t.textContent = "?";
      else if (!l.up) t.textContent = "DOWN";
      else t.textContent = `↓${fmtRate(l.rxRate)} ↑${fmtRate(l.txRate)} pkt/s` + (l.impairment ? ` · ${l.impairment}` : "");
    }
    const tr = document.createElement("tr");
    tr.dataset.node = l.node;
    tr.dataset.interface = l.interface;
    tr.dataset.up = up;
    cell(tr, l.node);
    cell(tr, l.interface);
    cell(tr, l.network);
    cell(tr, up, up === "up" ? "up" : "down");
    cell(tr, l.impairment || "");
    cell(tr, fmtRate(l.rxRate), "num");
    cell(tr, fmtRate(l.txRate), "num");
    body.appendChild(tr);
  }
}

function applyNodes(nodes) {
  for (const n of nodes) {
    const g = $(`g.node${attr("data-name", n.name)}`);
    if (!g) continue;
    g.dataset.up = String(n.up);
    g.dataset.ready = String(n.ready);
  }
}

function applyWorkloads(workloads) {
  for (const w of workloads) {
    const g = $(`g.workload${attr("data-name", w.name)}`);
    if (!g) continue;
    g.dataset.state = w.state;
    g.dataset.address = w.address;
    const texts = $$("text", g);
    if (texts.length > 1 && w.address) texts[1].textContent = w.address;
  }
}

function apply(sample) {
  const status = $("#status");
  if (sample.error) {
    status.dataset.connected = "false";
    status.textContent = "lab unreadable: " + sample.error;
    return;
  }
  applyNodes(sample.nodes || []);
  applyLinks(sample.links || []);
  applySessions(sample.sessions || []);
  applyWorkloads(sample.workloads || []);
  status.dataset.connected = "true";
  status.textContent = "live · " + new Date(sample.time).toLocaleTimeString();
  document.body.dataset.samples = String(+(document.body.dataset.samples || 0) + 1);
}

// showNode fetches and shows a node's routes and BGP status.
async function showNode(name) {
  for (const g of $$("g.node")) g.classList.toggle("selected", g.dataset.name === name);
  const aside = $("#detail");
  aside.hidden = false;
  aside.dataset.node = name;
  aside.dataset.loaded = "false";
  $("#detail-name").textContent = name;
  $("#detail-kind").textContent = "";
  $("#detail-routes").textContent = "…";
  $("#detail-bgp").textContent = "…";
  const err = $("#detail-error");
  err.hidden = true;
  try {
    const resp = await fetch("/api/nodes/" + encodeURIComponent(name));
    if (!resp.ok) throw new Error(await resp.text());
    const d = await resp.json();
    if (aside.dataset.node !== name) return; // another node was clicked since
    $("#detail-kind").textContent = d.kind;
    $("#detail-routes").textContent = d.routes || "(none)";
    $("#detail-bgp").textContent = d.bgp;
    if (d.error) {
      err.textContent = d.error;
      err.hidden = false;
    }
  } catch (e) {
    err.textContent = String(e.message || e);
    err.hidden = false;
  }
  aside.dataset.loaded = "true";
}

function connect() {
  const status = $("#status");
  const es = new EventSource("/api/events");
  es.addEventListener("state", (ev) => apply(JSON.parse(ev.data)));
  es.onerror = () => {
    status.dataset.connected = "false";
    status.textContent = "disconnected: retrying…";
  };
}

for (const g of $$("g.node")) g.addEventListener("click", () => showNode(g.dataset.name));
connect();

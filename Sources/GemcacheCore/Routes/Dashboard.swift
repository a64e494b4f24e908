/// The page at `GET /_gemcache/`: one self-contained HTML file (inline CSS, inline script, no
/// external resource, so it works offline) that reads `/_gemcache/stats` and `/_gemcache/history`
/// and redraws itself every five seconds. A selector shows the counts of all time or of the last
/// hour, day or week (`?since=`); the choice is kept in the address (`#since=1h`).
///
/// Every number it shows sits in an element marked `data-stat="<field>"` (totals),
/// `data-model="<id>" data-field="<field>"` (per model) or `data-group="namespaces|clients"
/// data-name="<name>" data-field="<field>"`, which is what the browser test reads.
enum Dashboard {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>gemcache</title>
        <style>
          :root { --bg: #f6f7f9; --card: #fff; --ink: #1d2330; --muted: #667085; --hit: #1a9f5b; --miss: #d9822b; --line: #e4e7ec; --bar: #3b6fd8; }
          * { box-sizing: border-box; }
          body { margin: 0; font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background: var(--bg); color: var(--ink); }
          header { display: flex; justify-content: space-between; align-items: baseline; padding: 18px 28px 6px; }
          header h1 { margin: 0; font-size: 20px; }
          header span { color: var(--muted); font-size: 12px; }
          main { padding: 8px 28px 28px; max-width: 1200px; }
          .cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(170px, 1fr)); gap: 12px; }
          .card { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
          .card .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
          .card .value { font-size: 28px; font-weight: 650; margin-top: 4px; font-variant-numeric: tabular-nums; }
          .card .sub { color: var(--muted); font-size: 12px; margin-top: 2px; }
          section { background: var(--card); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; margin-top: 14px; }
          section h2 { margin: 0 0 10px; font-size: 15px; }
          table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
          th, td { text-align: left; padding: 7px 8px; border-top: 1px solid var(--line); vertical-align: middle; }
          th { color: var(--muted); font-weight: 500; font-size: 12px; border-top: 0; }
          .bars { min-width: 260px; }
          .bar { position: relative; height: 10px; background: #eef1f5; border-radius: 5px; overflow: hidden; margin: 3px 0; }
          .bar i { position: absolute; left: 0; top: 0; bottom: 0; border-radius: 5px; }
          .bar.used i { background: var(--bar); }
          .bar.without i { background: #b8c4dc; }
          .barlabel { font-size: 12px; color: var(--muted); }
          .legend { display: flex; gap: 16px; font-size: 12px; color: var(--muted); margin-bottom: 6px; }
          .legend b { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 5px; vertical-align: -1px; }
          svg { width: 100%; height: 180px; display: block; }
          .muted { color: var(--muted); }
          #error { color: #b42318; }
          nav { display: flex; gap: 6px; align-items: center; padding: 4px 28px 8px; color: var(--muted); font-size: 12px; }
          nav button { font: inherit; border: 1px solid var(--line); background: var(--card); color: var(--ink); border-radius: 6px; padding: 4px 10px; cursor: pointer; }
          nav button.active { background: var(--bar); border-color: var(--bar); color: #fff; }
          .groups { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 14px; }
          .groups section { margin-top: 14px; }
        </style>
        </head>
        <body>
        <header><h1>gemcache</h1><span>quota day <b data-stat="quota_day">…</b>, resets <span data-stat="quota_day_resets_at">…</span> · updated <span id="updated">…</span> <span id="error"></span></span></header>
        <nav id="windows">counts of
          <button data-since="">all time</button><button data-since="1h">last hour</button><button data-since="24h">last 24 h</button><button data-since="7d">last 7 days</button>
          <span>· <span data-stat="window">…</span></span>
        </nav>
        <main>
          <div class="cards">
            <div class="card"><div class="label">Hit ratio</div><div class="value" data-stat="hit_ratio">…</div><div class="sub">(hits + coalesced) / answered</div></div>
            <div class="card"><div class="label">Requests saved</div><div class="value" data-stat="saved_requests">…</div><div class="sub">of <span data-stat="requests">…</span> requests</div></div>
            <div class="card"><div class="label">Tokens saved</div><div class="value" data-stat="saved_tokens">…</div><div class="sub">answered from the cache</div></div>
            <div class="card"><div class="label">USD saved</div><div class="value" data-stat="saved_usd">…</div><div class="sub">at the configured prices</div></div>
            <div class="card"><div class="label">Upstream calls</div><div class="value" data-stat="upstream_requests">…</div><div class="sub"><span data-stat="hits">…</span> hits · <span data-stat="coalesced">…</span> coalesced · <span data-stat="misses">…</span> misses</div></div>
            <div class="card"><div class="label">Entries</div><div class="value" data-stat="entries">…</div><div class="sub"><span data-stat="store_bytes">…</span> in the store</div></div>
          </div>
          <section>
            <h2>Free-tier quota today, per model</h2>
            <div class="legend"><span><b style="background: var(--bar)"></b>used (upstream calls)</span><span><b style="background: #b8c4dc"></b>would have used without the cache</span></div>
            <table>
              <thead><tr><th>model</th><th class="bars">requests per day</th><th>upstream today</th><th>saved today</th><th>this minute</th><th>saved USD</th></tr></thead>
              <tbody id="models"><tr><td colspan="6" class="muted">no requests yet</td></tr></tbody>
            </table>
          </section>
          <div class="groups">
            <section>
              <h2>Per namespace <span class="muted">(X-Gemcache-Namespace)</span></h2>
              <table>
                <thead><tr><th>namespace</th><th>requests</th><th>saved</th><th>misses</th><th>upstream</th><th>hit ratio</th></tr></thead>
                <tbody id="namespaces"><tr><td colspan="6" class="muted">no requests in this window</td></tr></tbody>
              </table>
            </section>
            <section>
              <h2>Per client <span class="muted">(fingerprint of the credential's salted hash)</span></h2>
              <table>
                <thead><tr><th>client</th><th>requests</th><th>saved</th><th>misses</th><th>upstream</th><th>hit ratio</th></tr></thead>
                <tbody id="clients"><tr><td colspan="6" class="muted">no requests in this window</td></tr></tbody>
              </table>
            </section>
          </div>
          <section>
            <h2>Hits and misses per minute, last 24 hours</h2>
            <div class="legend"><span><b style="background: var(--hit)"></b>hits + coalesced (<span data-stat="history_hits">…</span>)</span><span><b style="background: var(--miss)"></b>misses (<span data-stat="history_misses">…</span>)</span></div>
            <svg id="chart" viewBox="0 0 1440 180" preserveAspectRatio="none" role="img" aria-label="hits and misses per minute"></svg>
            <div class="legend" style="justify-content: space-between"><span id="axis-start">24 h ago</span><span id="axis-middle">12 h ago</span><span>now</span></div>
          </section>
        </main>
        <script>
        "use strict";
        const integer = n => Number(n).toLocaleString("en-US");
        const percent = p => p === null || p === undefined ? "no known limit" : p.toFixed(1) + " %";
        const usd = u => u === null || u === undefined ? "no price" : "$" + u.toFixed(4);
        const bytes = b => b < 1048576 ? (b / 1024).toFixed(1) + " KiB" : (b / 1048576).toFixed(1) + " MiB";
        const show = (field, text) => document.querySelectorAll('[data-stat="' + field + '"]').forEach(e => e.textContent = text);

        function element(tag, attributes, text) {
          const e = document.createElement(tag);
          for (const [k, v] of Object.entries(attributes || {})) e.setAttribute(k, v);
          if (text !== undefined) e.textContent = text;
          return e;
        }

        function bar(kind, pct) {
          const b = element("div", {class: "bar " + kind});
          const fill = element("i");
          fill.style.width = Math.min(100, pct || 0) + "%";
          b.appendChild(fill);
          return b;
        }

        function renderModels(models) {
          const body = document.getElementById("models");
          const names = Object.keys(models).sort();
          if (names.length === 0) return;
          body.replaceChildren();
          for (const name of names) {
            const m = models[name];
            const cell = (field, text) => element("td", {"data-model": name, "data-field": field}, text);
            const row = element("tr");
            row.appendChild(element("td", {}, name));
            const bars = element("td", {class: "bars"});
            const rpd = m.free_tier.rpd;
            bars.appendChild(bar("used", m.rpd_used_pct));
            bars.appendChild(bar("without", m.rpd_without_cache_pct));
            const label = element("div", {class: "barlabel"});
            if (rpd === null) {
              label.appendChild(element("span", {"data-model": name, "data-field": "rpd"}, "no known limit"));
              label.appendChild(document.createTextNode(" (not in limits.models): usage only"));
            } else {
              label.appendChild(element("span", {"data-model": name, "data-field": "rpd_used_pct"}, percent(m.rpd_used_pct)));
              label.appendChild(document.createTextNode(" used, "));
              label.appendChild(element("span", {"data-model": name, "data-field": "rpd_without_cache_pct"}, percent(m.rpd_without_cache_pct)));
              label.appendChild(document.createTextNode(" without the cache, of "));
              label.appendChild(element("span", {"data-model": name, "data-field": "rpd"}, integer(rpd)));
              label.appendChild(document.createTextNode(" per day"));
            }
            bars.appendChild(label);
            row.appendChild(bars);
            row.appendChild(cell("upstream_requests_today", integer(m.upstream_requests_today)));
            row.appendChild(cell("saved_requests_today", integer(m.saved_requests_today)));
            row.appendChild(cell("upstream_requests_minute", integer(m.upstream_requests_minute)));
            row.appendChild(cell("saved_usd", usd(m.saved_usd)));
            body.appendChild(row);
          }
        }

        // The busiest 50 namespaces or clients of the window.
        function renderGroups(id, groups, empty) {
          const body = document.getElementById(id);
          const names = Object.keys(groups).sort((a, b) => groups[b].requests - groups[a].requests || a.localeCompare(b)).slice(0, 50);
          if (names.length === 0) {
            body.replaceChildren(element("tr", {}));
            body.firstChild.appendChild(element("td", {colspan: "6", class: "muted"}, empty));
            return;
          }
          body.replaceChildren();
          for (const name of names) {
            const g = groups[name];
            const cell = (field, text) => element("td", {"data-group": id, "data-name": name, "data-field": field}, text);
            const row = element("tr");
            row.appendChild(element("td", {}, name === "" ? "(none)" : name));
            row.appendChild(cell("requests", integer(g.requests)));
            row.appendChild(cell("saved_requests", integer(g.saved_requests)));
            row.appendChild(cell("misses", integer(g.misses)));
            row.appendChild(cell("upstream_requests", integer(g.upstream_requests)));
            row.appendChild(cell("hit_ratio", (g.hit_ratio * 100).toFixed(1) + " %"));
            body.appendChild(row);
          }
        }

        // The window shown: all time, or `since` (1h, 24h, 7d) from the address's `#since=`.
        let since = new URLSearchParams(location.hash.slice(1)).get("since") || "";
        function choose(value) {
          since = value;
          history.replaceState(null, "", value ? "#since=" + value : location.pathname);
          document.querySelectorAll("#windows button").forEach(b => b.classList.toggle("active", b.dataset.since === since));
          load();
        }
        document.querySelectorAll("#windows button").forEach(b => b.addEventListener("click", () => choose(b.dataset.since)));
        document.querySelectorAll("#windows button").forEach(b => b.classList.toggle("active", b.dataset.since === since));

        // Charts the day, or from shortly before the first counted minute when the history is younger.
        function renderHistory(h) {
          const svg = document.getElementById("chart");
          const first = h.hits.findIndex((v, i) => v > 0 || h.misses[i] > 0);
          const from = first < 0 ? 0 : Math.max(0, Math.min(first - 5, h.hits.length - 60));
          const hits = h.hits.slice(from), misses = h.misses.slice(from);
          svg.setAttribute("viewBox", "0 0 " + (hits.length - 1) + " 180");
          const minuteTime = i => new Date((h.first_minute + from + i) * 60000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
          document.getElementById("axis-start").textContent = minuteTime(0);
          document.getElementById("axis-middle").textContent = minuteTime(Math.floor((hits.length - 1) / 2));
          const peak = Math.max(1, ...hits, ...misses);
          const line = (values, color) => {
            const points = values.map((v, i) => i + "," + (176 - v / peak * 170).toFixed(1)).join(" ");
            const p = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
            p.setAttribute("points", points);
            p.setAttribute("fill", "none");
            p.setAttribute("stroke", color);
            p.setAttribute("stroke-width", "2");
            p.setAttribute("vector-effect", "non-scaling-stroke");
            return p;
          };
          svg.replaceChildren(line(misses, "#d9822b"), line(hits, "#1a9f5b"));
          show("history_hits", integer(h.hits.reduce((a, b) => a + b, 0)));
          show("history_misses", integer(h.misses.reduce((a, b) => a + b, 0)));
        }

        async function load() {
          try {
            const statsURL = "/_gemcache/stats" + (since ? "?since=" + encodeURIComponent(since) : "");
            const [stats, perMinute] = await Promise.all([statsURL, "/_gemcache/history"].map(u => fetch(u, {cache: "no-store"}).then(r => r.json())));
            for (const field of ["requests", "saved_requests", "saved_tokens", "upstream_requests", "hits", "coalesced", "misses", "entries"]) show(field, integer(stats[field]));
            show("hit_ratio", (stats.hit_ratio * 100).toFixed(1) + " %");
            show("saved_usd", usd(stats.saved_usd));
            show("store_bytes", bytes(stats.store_bytes));
            show("quota_day", stats.quota_day);
            show("quota_day_resets_at", new Date(stats.quota_day_resets_at).toLocaleString());
            show("window", stats.window ? "from " + new Date(stats.window.since).toLocaleString() + " (by the " + stats.window.resolution + ")" : "since " + new Date(stats.since).toLocaleString());
            renderModels(stats.models);
            // Past 48 hours the counts are by the hour, kept for totals and models only.
            const empty = stats.window && stats.window.resolution === "hour" ? "kept for the last 48 hours only" : "no requests in this window";
            renderGroups("namespaces", stats.namespaces, empty);
            renderGroups("clients", stats.clients, empty);
            renderHistory(perMinute);
            document.getElementById("updated").textContent = new Date().toLocaleTimeString();
            document.getElementById("error").textContent = "";
            document.body.dataset.loaded = "true";
          } catch (error) {
            document.getElementById("error").textContent = "· cannot reach the proxy";
          }
        }
        load();
        setInterval(load, 5000);
        </script>
        </body>
        </html>
        """#
}

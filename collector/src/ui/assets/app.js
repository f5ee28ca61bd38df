// Spanline web UI: one page app over the collector's JSON query API.
//
// Safety rule: every string that comes from a span is untrusted. It reaches the DOM only via
// textContent, createTextNode, or setAttribute on non-script attributes (class, title, href
// built from validated hex ids or http(s) URLs). No HTML parsing sinks are used anywhere.
'use strict';

(function () {
  // ---------------------------------------------------------------- helpers

  const SVG_NS = 'http://www.w3.org/2000/svg';

  /** Element builder: h('div', {class: 'x', title: t}, child, 'text', ...). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
  }

  function setAttrs(el, attrs) {
    if (!attrs) return;
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) {
        el.addEventListener(k.slice(2), v);
      } else if (k === 'href') {
        el.setAttribute('href', safeHref(v));
      } else {
        el.setAttribute(k, v === true ? '' : String(v));
      }
    }
  }

  function append(el, children) {
    for (const c of children) {
      if (c === undefined || c === null || c === false) continue;
      if (Array.isArray(c)) append(el, c);
      else if (c instanceof Node) el.appendChild(c);
      else el.appendChild(document.createTextNode(String(c)));
    }
  }

  /** Only same-origin paths and http(s) URLs become links; anything else is inert. */
  function safeHref(v) {
    const t = String(v);
    if (t.startsWith('/') && !t.startsWith('//')) return t;
    if (/^https?:\/\//i.test(t)) return t;
    return '#';
  }

  function clear(el) {
    while (el.firstChild) el.removeChild(el.firstChild);
  }

  const HEX32 = /^[0-9a-f]{32}$/;
  // Most spans one tree request asks for: a huge trace opens at its top (breadth first) and
  // loads the rest below a span on demand (`?root=SPAN_ID`).
  const TREE_PAGE_SPANS = 5000;
  const HEX16 = /^[0-9a-f]{16}$/;

  function fmtDur(ns) {
    ns = Number(ns) || 0;
    if (ns < 1e3) return ns.toFixed(0) + ' ns';
    if (ns < 1e6) return trim(ns / 1e3) + ' µs';
    if (ns < 1e9) return trim(ns / 1e6) + ' ms';
    if (ns < 60e9) return trim(ns / 1e9) + ' s';
    return trim(ns / 60e9) + ' min';
  }

  function trim(x) {
    return x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2);
  }

  function fmtAgo(unixNs) {
    const s = (Date.now() - unixNs / 1e6) / 1000;
    if (s < 0) return 'in the future';
    if (s < 60) return Math.round(s) + ' s ago';
    if (s < 3600) return Math.round(s / 60) + ' min ago';
    if (s < 86400) return Math.round(s / 3600) + ' h ago';
    return Math.round(s / 86400) + ' d ago';
  }

  function fmtTime(unixNs) {
    const d = new Date(unixNs / 1e6);
    return d.toLocaleString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
  }

  function plural(n, word) {
    return n + ' ' + word + (n === 1 ? '' : 's');
  }

  function valueText(v) {
    if (typeof v === 'string') return v;
    return JSON.stringify(v);
  }

  async function getJSON(url) {
    try {
      const r = await fetch(url, { headers: { Accept: 'application/json' } });
      let data = null;
      try {
        data = await r.json();
      } catch (_) {
        data = null;
      }
      return { ok: r.ok, status: r.status, data };
    } catch (e) {
      return { ok: false, status: 0, data: null, error: String(e) };
    }
  }

  async function getText(url) {
    const r = await fetch(url, { headers: { Accept: 'text/plain' } });
    return { ok: r.ok, status: r.status, text: await r.text() };
  }

  // Service colours: a function of the service name alone (32-bit FNV-1a hash of its UTF-16
  // code units, modulo the palette), so a service keeps its colour whatever other services
  // exist or were seen first, on every page and every visit.
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#ff9da7', '#bab0ac', '#86bcb6', '#d37295', '#8cd17d'];
  function colourOf(service) {
    const name = String(service);
    let hash = 0x811c9dc5;
    for (let i = 0; i < name.length; i++) {
      hash ^= name.charCodeAt(i);
      hash = Math.imul(hash, 0x01000193) >>> 0;
    }
    return PALETTE[hash % PALETTE.length];
  }
  let servicesLoaded = null;
  function loadServices() {
    if (!servicesLoaded) {
      servicesLoaded = getJSON('/v1/services').then((r) => (r.ok && Array.isArray(r.data) ? r.data.map(String) : []));
    }
    return servicesLoaded;
  }

  function swatch(service) {
    const el = h('span', { class: 'swatch' });
    el.style.background = colourOf(service);
    return el;
  }

  function serviceChip(service) {
    return h('span', { class: 'chip' }, swatch(service), service);
  }

  // ---------------------------------------------------------------- routing

  const app = document.getElementById('app');

  function navigate(url, replace) {
    if (replace) history.replaceState(null, '', url);
    else history.pushState(null, '', url);
    route();
  }

  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-nav]');
    if (!a || e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey) return;
    e.preventDefault();
    navigate(a.getAttribute('href'));
  });
  window.addEventListener('popstate', route);

  // "Go to trace": a whole trace id, or a prefix of one such as the short ids of the search
  // list, resolved among the newest traces the search API returns.
  const JUMP_PREFIX_SEARCH_LIMIT = 1000;
  document.getElementById('jump').addEventListener('submit', async (e) => {
    e.preventDefault();
    const input = document.getElementById('jump-id');
    const id = input.value.trim().toLowerCase();
    const refuse = (why) => {
      input.classList.add('bad');
      input.title = why;
    };
    if (HEX32.test(id)) {
      input.value = '';
      navigate('/trace/' + id);
      return;
    }
    if (!/^[0-9a-f]{4,31}$/.test(id)) {
      refuse('A trace id is 32 hex digits; a prefix of at least 4 of them also works');
      return;
    }
    const r = await getJSON('/v1/traces?limit=' + JUMP_PREFIX_SEARCH_LIMIT);
    const ids = r.ok && Array.isArray(r.data) ? r.data.map((t) => String(t && t.trace_id)).filter((t) => t.startsWith(id)) : [];
    if (ids.length === 1) {
      input.value = '';
      navigate('/trace/' + ids[0]);
    } else if (ids.length > 1) {
      refuse(ids.length + ' recent traces start with ' + id + ': type more digits');
    } else {
      refuse('No trace among the newest ' + JUMP_PREFIX_SEARCH_LIMIT + ' starts with ' + id);
    }
  });
  document.getElementById('jump-id').addEventListener('input', (e) => e.target.classList.remove('bad'));

  let routeSeq = 0;
  function route() {
    const seq = ++routeSeq;
    const path = location.pathname;
    const params = new URLSearchParams(location.search);
    document.getElementById('nav-search').classList.toggle('active', path === '/' || path === '/search');
    document.getElementById('nav-map').classList.toggle('active', path === '/map');
    clear(app);
    const m = path.match(/^\/trace\/([^/]+)\/?$/);
    if (m) {
      traceView(decodeURIComponent(m[1]).toLowerCase(), params, seq);
    } else if (path === '/map') {
      mapView(params, seq);
    } else if (path === '/' || path === '/search') {
      searchView(params, seq);
    } else {
      notFoundView(path);
    }
  }

  function notFoundView(path) {
    document.title = 'Not found · Spanline';
    app.append(h('div', { class: 'pad', id: 'not-found' },
      h('h1', null, 'Page not found'),
      h('p', null, 'Nothing lives at ', h('code', null, path), '. Try ',
        h('a', { href: '/', 'data-nav': true }, 'the trace search'), ', ',
        h('a', { href: '/map', 'data-nav': true }, 'the service map'),
        ', or a trace at ', h('code', null, '/trace/<trace_id>'), '.')));
  }

  function stale(seq) {
    return seq !== routeSeq;
  }

  // ---------------------------------------------------------------- search page

  const LOOKBACKS = [['5m', 'Last 5 minutes'], ['15m', 'Last 15 minutes'], ['1h', 'Last hour'], ['6h', 'Last 6 hours'], ['24h', 'Last 24 hours'], ['7d', 'Last 7 days'], ['all', 'Any time'], ['custom', 'Custom range']];
  const LOOKBACK_S = { '5m': 300, '15m': 900, '1h': 3600, '6h': 21600, '24h': 86400, '7d': 604800 };

  function field(label, control, cls) {
    return h('label', { class: 'field ' + (cls || '') }, h('span', null, label), control);
  }

  function select(name, options, value) {
    const el = h('select', { name, id: 'f-' + name });
    for (const [v, text] of options) {
      const o = h('option', { value: v }, text);
      if (v === value) o.selected = true;
      el.appendChild(o);
    }
    return el;
  }

  async function searchView(params, seq) {
    document.title = 'Search · Spanline';
    const p = (k, d) => params.get(k) ?? d;
    const form = h('form', { class: 'search-form', id: 'search-form' });
    const service = select('service', [['', 'All services']], p('service', ''));
    const operation = select('operation', [['', 'All operations']], p('operation', ''));
    const attrs = h('input', { name: 'attrs', id: 'f-attrs', placeholder: 'http.response.status_code=502 app.user.id=1', value: p('attrs', ''), spellcheck: 'false' });
    const minD = h('input', { name: 'min_duration', id: 'f-min', placeholder: 'e.g. 100ms', value: p('min_duration', ''), size: 8 });
    const maxD = h('input', { name: 'max_duration', id: 'f-max', placeholder: 'e.g. 2s', value: p('max_duration', ''), size: 8 });
    const lookback = select('lookback', LOOKBACKS, p('lookback', '1h'));
    const start = h('input', { type: 'datetime-local', name: 'start', id: 'f-start', value: p('start', ''), step: 1 });
    const end = h('input', { type: 'datetime-local', name: 'end', id: 'f-end', value: p('end', ''), step: 1 });
    const custom = h('div', { class: 'custom-range' }, field('From', start), field('To', end));
    custom.hidden = lookback.value !== 'custom';
    lookback.addEventListener('change', () => (custom.hidden = lookback.value !== 'custom'));
    const kind = select('kind', [['', 'Any kind'], ['server', 'server'], ['client', 'client'], ['internal', 'internal'], ['producer', 'producer'], ['consumer', 'consumer']], p('kind', ''));
    const errors = h('input', { type: 'checkbox', name: 'error', id: 'f-error', value: 'true' });
    errors.checked = p('error', '') === 'true';
    const sort = select('sort', [['newest', 'Newest first'], ['duration', 'Slowest first'], ['spans', 'Most spans']], p('sort', 'newest'));
    const limit = h('input', { type: 'number', name: 'limit', id: 'f-limit', min: 1, max: 1000, value: p('limit', '50') });
    form.append(
      field('Service', service),
      field('Operation', operation),
      field('Attributes (key=value, space separated)', attrs, 'wide'),
      field('Min duration', minD, 'narrow'),
      field('Max duration', maxD, 'narrow'),
      field('Time', lookback),
      custom,
      field('Span kind', kind),
      h('label', { class: 'field check' }, errors, h('span', null, 'Errors only')),
      field('Sort', sort),
      field('Limit', limit, 'narrow'),
      h('button', { type: 'submit', class: 'primary', id: 'f-submit' }, 'Find traces')
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const el of form.elements) {
        if (!el.name) continue;
        if (el.type === 'checkbox') {
          if (el.checked) q.set(el.name, 'true');
        } else if (el.value !== '' && !(el.closest('.custom-range') && el.closest('.custom-range').hidden)) {
          q.set(el.name, el.value);
        }
      }
      navigate('/?' + q.toString());
    });

    const results = h('section', { class: 'results', id: 'results' }, h('p', { class: 'muted' }, 'Searching…'));
    app.append(h('div', { class: 'search-page' }, h('aside', { class: 'panel' }, h('h2', null, 'Find traces'), form), results));

    const services = await loadServices();
    if (stale(seq)) return;
    for (const name of services) service.appendChild(h('option', { value: name }, name));
    service.value = p('service', '');
    const fillOps = async () => {
      clear(operation);
      operation.appendChild(h('option', { value: '' }, 'All operations'));
      if (!service.value) return;
      const ops = await operationsOf(service.value);
      for (const op of ops) operation.appendChild(h('option', { value: op }, op));
      operation.value = ops.includes(p('operation', '')) ? p('operation', '') : '';
    };
    service.addEventListener('change', fillOps);
    fillOps();

    runSearch(params, results, seq);
  }

  const opsCache = new Map();
  async function operationsOf(service) {
    if (opsCache.has(service)) return opsCache.get(service);
    let ops = [];
    const j = await getJSON('/api/services/' + encodeURIComponent(service) + '/operations');
    if (j.ok && j.data && Array.isArray(j.data.data)) {
      ops = j.data.data.map((o) => (typeof o === 'string' ? o : o && o.name)).filter((o) => typeof o === 'string');
    } else {
      const r = await getJSON('/v1/traces?service=' + encodeURIComponent(service) + '&limit=500');
      const set = new Set();
      if (r.ok && Array.isArray(r.data)) for (const t of r.data) for (const o of t.operations || []) set.add(String(o));
      ops = [...set];
    }
    ops.sort();
    opsCache.set(service, ops);
    return ops;
  }

  function toApiQuery(params) {
    const q = new URLSearchParams();
    for (const k of ['service', 'operation', 'min_duration', 'max_duration', 'kind', 'limit']) {
      if (params.get(k)) q.set(k, params.get(k));
    }
    if (params.get('error') === 'true') q.set('error', 'true');
    const sort = params.get('sort') || 'newest';
    if (sort === 'duration') q.set('sort', 'duration');
    const lb = params.get('lookback') || '1h';
    const nowS = Date.now() / 1000;
    if (LOOKBACK_S[lb]) {
      q.set('start_time', (nowS - LOOKBACK_S[lb]).toFixed(3));
    } else if (lb === 'custom') {
      const st = Date.parse(params.get('start') || '');
      const en = Date.parse(params.get('end') || '');
      if (!isNaN(st)) q.set('start_time', (st / 1000).toFixed(3));
      if (!isNaN(en)) q.set('end_time', (en / 1000).toFixed(3));
    }
    for (const pair of (params.get('attrs') || '').split(/\s+/)) {
      const i = pair.indexOf('=');
      if (i > 0) q.set('attr.' + pair.slice(0, i), pair.slice(i + 1));
    }
    if (!q.has('limit')) q.set('limit', '50');
    return q;
  }

  async function runSearch(params, results, seq) {
    const q = toApiQuery(params);
    const r = await getJSON('/v1/traces?' + q.toString());
    if (stale(seq)) return;
    clear(results);
    if (!r.ok || !Array.isArray(r.data)) {
      results.append(h('p', { class: 'error-box' }, 'Search failed: ' + ((r.data && r.data.error) || 'HTTP ' + r.status)));
      return;
    }
    let traces = r.data.filter((t) => t && typeof t.trace_id === 'string' && HEX32.test(t.trace_id));
    const durOf = (t) => Number(t.duration_ns ?? t.duration * 1e9) || 0;
    const startOf = (t) => Number(t.start_time_unix_nano ?? t.start_time * 1e9) || 0;
    const sort = params.get('sort') || 'newest';
    if (sort === 'duration') traces.sort((a, b) => durOf(b) - durOf(a));
    else if (sort === 'spans') traces.sort((a, b) => (b.span_count || 0) - (a.span_count || 0));
    else traces.sort((a, b) => startOf(b) - startOf(a));

    const errs = traces.filter((t) => t.error_count > 0).length;
    results.append(h('div', { class: 'results-head' }, h('h2', null, plural(traces.length, 'trace')), errs ? h('span', { class: 'badge err' }, errs + ' with errors') : null));
    if (!traces.length) {
      results.append(h('p', { class: 'muted' }, 'No traces match. Widen the time range, or place an order: ', h('code', null, "curl -X POST localhost:8080/orders -H 'Content-Type: application/json' -d '{\"user_id\":\"1\",\"product\":\"Laptop\",\"quantity\":1}'")));
      return;
    }
    results.append(scatter(traces, durOf, startOf));
    const maxDur = Math.max(...traces.map(durOf), 1);
    const list = h('ol', { class: 'trace-list', id: 'trace-list' });
    for (const t of traces) {
      const d = durOf(t);
      const bar = h('span', { class: 'dur-bar' + (t.error_count > 0 ? ' err' : '') });
      bar.style.width = Math.max(0.5, (d / maxDur) * 100) + '%';
      const services = Array.isArray(t.services) ? t.services.map(String) : [];
      const row = h(
        'li',
        { class: 'trace-row' + (t.error_count > 0 ? ' has-error' : ''), 'data-trace-id': t.trace_id },
        h(
          'a',
          { href: '/trace/' + t.trace_id, 'data-nav': true, class: 'trace-link' },
          h(
            'div',
            { class: 'row1' },
            t.error_count > 0 ? h('span', { class: 'err-mark', title: plural(t.error_count, 'error span') }, '!') : null,
            h('strong', { class: 'root-name' }, swatch(String(t.root_service || '?')), String(t.root_service || '?'), ': ', String(t.root_operation || '(root not arrived)')),
            t.http_status !== undefined && t.http_status !== null ? h('span', { class: 'http-status' + (Number(t.http_status) >= 400 ? ' bad' : ''), title: 'HTTP status of the root span' }, String(t.http_status)) : null,
            h('span', { class: 'dur' }, fmtDur(d))
          ),
          h('div', { class: 'bar-track' }, bar),
          h(
            'div',
            { class: 'row3' },
            h('span', { class: 'counts' }, plural(t.span_count || 0, 'span'), ' · ', plural(services.length, 'service'), t.error_count > 0 ? h('span', { class: 'err-text' }, ' · ' + plural(t.error_count, 'error')) : null),
            h('span', { class: 'services' }, services.map(serviceChip)),
            h('span', { class: 'when', title: fmtTime(startOf(t)) }, fmtAgo(startOf(t))),
            h('code', { class: 'tid' }, t.trace_id.slice(0, 12))
          )
        )
      );
      list.append(row);
    }
    results.append(list);
  }

  function scatter(traces, durOf, startOf) {
    const W = 900, H = 170, L = 60, B = 24, T = 10, R = 12;
    const xs = traces.map(startOf), ys = traces.map(durOf);
    let x0 = Math.min(...xs), x1 = Math.max(...xs);
    if (x1 - x0 < 1e9) { x0 -= 5e8; x1 += 5e8; }
    const y1 = Math.max(...ys, 1);
    const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
    const sy = (y) => H - B - (y / y1) * (H - B - T);
    const svg = s('svg', { class: 'scatter', id: 'scatter', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'Duration over time' });
    for (let i = 0; i <= 3; i++) {
      const y = (y1 * i) / 3;
      svg.append(s('line', { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: 'grid' }), s('text', { x: L - 6, y: sy(y) + 4, class: 'axis', 'text-anchor': 'end' }, fmtDur(y)));
    }
    for (let i = 0; i <= 4; i++) {
      const x = x0 + ((x1 - x0) * i) / 4;
      const d = new Date(x / 1e6);
      // Naming any one field drops the defaults, so name them all.
      const hms = { hour12: false, hour: '2-digit', minute: '2-digit', second: '2-digit' };
      const fmt = x1 - x0 < 20e9 ? { ...hms, fractionalSecondDigits: 1 } : hms;
      svg.append(s('text', { x: sx(x), y: H - 6, class: 'axis', 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, d.toLocaleTimeString(undefined, fmt)));
    }
    traces.forEach((t, i) => {
      const r = Math.min(12, 3 + Math.sqrt(t.span_count || 1));
      const c = s('circle', { cx: sx(xs[i]), cy: sy(ys[i]), r, class: 'dot' + (t.error_count > 0 ? ' err' : ''), 'data-trace-id': t.trace_id, tabindex: 0 },
        s('title', null, `${t.root_service || '?'}: ${t.root_operation || '?'}\n${fmtDur(ys[i])} · ${plural(t.span_count || 0, 'span')}${t.error_count ? ' · ' + plural(t.error_count, 'error') : ''}\n${fmtTime(xs[i])}`));
      const open = () => navigate('/trace/' + t.trace_id);
      c.addEventListener('click', open);
      c.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
      svg.append(c);
    });
    return h('div', { class: 'scatter-wrap' }, svg);
  }

  // ---------------------------------------------------------------- trace page

  /** Flattens the tree to pre-order rows and computes what the server may not send. */
  function prepare(tree) {
    const rows = [];
    let maxDepth = 0;
    const visit = (node, depth, parentRow) => {
      // Iterative pre-order so a deep tree cannot overflow the stack.
      const stack = [[node, depth, parentRow]];
      while (stack.length) {
        const [n, d, p] = stack.pop();
        const row = { node: n, depth: d, parent: p, index: rows.length, kids: [], size: 1 };
        row.start = Number(n.start_time_unix_nano) || 0;
        row.dur = Number(n.duration_ns) || 0;
        row.end = row.start + row.dur;
        row.offset = n.offset_ns !== undefined ? Number(n.offset_ns) : row.start - tree.start;
        row.error = n.status === 'error';
        if (p) p.kids.push(row);
        rows.push(row);
        if (d > maxDepth) maxDepth = d;
        const ch = Array.isArray(n.children) ? n.children : [];
        for (let i = ch.length - 1; i >= 0; i--) stack.push([ch[i], d + 1, row]);
      }
    };
    tree.start = Number(tree.start_time_unix_nano) || 0;
    for (const r of tree.roots || []) visit(r, 0, null);
    // Subtree sizes (pre-order: a row's subtree is rows[index .. index+size)).
    for (let i = rows.length - 1; i >= 0; i--) if (rows[i].parent) rows[i].parent.size += rows[i].size;
    // Self time: duration minus the union of children's intervals clipped to the span.
    for (const r of rows) {
      if (r.node.self_time_ns !== undefined) { r.self = Number(r.node.self_time_ns); continue; }
      const iv = r.kids.map((k) => [Math.max(k.start, r.start), Math.min(k.end, r.end)]).filter(([a, b]) => b > a).sort((a, b) => a[0] - b[0]);
      let covered = 0, cs = -1, ce = -1;
      for (const [a, b] of iv) {
        if (a > ce) { covered += ce - cs; cs = a; ce = b; } else if (b > ce) ce = b;
      }
      covered += ce - cs;
      r.self = Math.max(0, r.dur - covered);
    }
    // Critical path: the server's flags, else computed from the first root.
    const serverCritical = rows.some((r) => r.node.critical !== undefined) || Array.isArray(tree.critical_path);
    if (serverCritical) {
      const ids = new Set(Array.isArray(tree.critical_path) ? tree.critical_path : []);
      for (const r of rows) r.critical = r.node.critical === true || ids.has(r.node.span_id);
    } else if (rows.length) {
      markCritical(rows[0], rows[0].end);
    }
    // Time on the critical path per service ("where did the time go").
    const bySvc = new Map();
    for (const r of rows) {
      if (!r.critical) continue;
      const critKids = r.kids.filter((k) => k.critical);
      let t = r.dur;
      for (const k of critKids) t -= Math.max(0, Math.min(k.end, r.end) - Math.max(k.start, r.start));
      bySvc.set(r.node.service, (bySvc.get(r.node.service) || 0) + Math.max(0, t));
    }
    tree.criticalBySvc = [...bySvc.entries()].sort((a, b) => b[1] - a[1]);
    tree.depthMax = tree.depth !== undefined ? Number(tree.depth) : rows.length ? maxDepth + 1 : 0;
    tree.computedCritical = !serverCritical;
    return rows;
  }

  function markCritical(row, bound) {
    const stack = [[row, bound]];
    while (stack.length) {
      const [r, b] = stack.pop();
      r.critical = true;
      let t = Math.min(r.end, b);
      const kids = [...r.kids].sort((x, y) => Math.min(y.end, r.end) - Math.min(x.end, r.end));
      for (const k of kids) {
        const kEnd = Math.min(k.end, r.end);
        if (kEnd <= t && kEnd > r.start) {
          stack.push([k, t]);
          t = k.start;
        }
      }
    }
  }

  /** The spans that explain a failure: error spans none of whose descendants is an error. */
  function rootCauses(rows) {
    const out = [];
    for (const r of rows) {
      if (!r.error) continue;
      let childErr = false;
      for (let i = r.index + 1; i < r.index + r.size; i++) if (rows[i].error) { childErr = true; break; }
      if (!childErr) out.push(r);
    }
    return out;
  }

  function exceptionOf(node) {
    for (const e of node.events || []) {
      const a = (e && e.attributes) || {};
      if (e.name === 'exception' || a['exception.type'] || a['exception.message']) {
        return { type: a['exception.type'], message: a['exception.message'], stack: a['exception.stacktrace'] };
      }
    }
    return null;
  }

  function reasonOf(r) {
    const n = r.node;
    const ex = exceptionOf(n);
    const parts = [];
    if (n.status_message) parts.push(String(n.status_message));
    if (ex && (ex.type || ex.message)) {
      // The exception's message is often the status message too: say it once.
      const said = (text) => parts.some((p) => p.includes(text));
      const message = ex.message !== undefined && !said(valueText(ex.message)) ? ex.message : undefined;
      const t = [ex.type, message].filter((x) => x !== undefined).map(valueText).join(': ');
      if (t && !said(t)) parts.push(t);
    }
    const code = n.attributes && n.attributes['http.response.status_code'];
    if (code !== undefined && !parts.some((p) => p.includes(valueText(code)))) parts.push('HTTP ' + valueText(code));
    if (!parts.length && n.attributes && n.attributes['error.type'] !== undefined) parts.push(valueText(n.attributes['error.type']));
    return parts.join(' — ') || 'status error';
  }

  async function traceView(traceId, params, seq) {
    document.title = 'Trace ' + traceId.slice(0, 8) + ' · Spanline';
    if (!HEX32.test(traceId)) {
      app.append(h('div', { class: 'pad' }, h('p', { class: 'error-box' }, 'Not a trace id: a trace id is 32 hex digits.')));
      return;
    }
    const t0 = performance.now();
    app.append(h('p', { class: 'muted pad', id: 'trace-loading' }, 'Loading trace ', h('code', null, traceId), '…'));
    loadServices();
    // A trace just placed may still be in flight: let the collector wait briefly for it.
    let r = await getJSON('/v1/traces/' + traceId + '/tree?wait=3&limit=' + TREE_PAGE_SPANS);
    if (stale(seq)) return;
    clear(app);
    if (!r.ok || !r.data || !Array.isArray(r.data.roots)) {
      const msg = r.status === 404 ? 'No spans of this trace have arrived (yet).' : 'Could not load the trace: ' + ((r.data && r.data.error) || 'HTTP ' + r.status);
      app.append(h('div', { class: 'pad' }, h('p', { class: 'error-box', id: 'trace-error' }, msg, ' ', h('a', { href: location.pathname, 'data-nav': true }, 'Try again'))));
      return;
    }
    const tFetched = performance.now();
    await loadServices();
    if (stale(seq)) return;
    const tree = r.data;
    const tPrep = performance.now();
    const rows = prepare(tree);
    const tPrepared = performance.now();
    renderTrace(tree, rows, traceId, params);
    if (tree.complete === false) followIncomplete(traceId, params, seq, tree);
    document.body.dataset.tracePrepareMs = (tPrepared - tPrep).toFixed(0);
    document.body.dataset.traceBuildMs = (performance.now() - tPrepared).toFixed(0);
    // Measure until the browser has laid out and painted the page.
    void app.offsetHeight;
    requestAnimationFrame(() => setTimeout(() => {
      const done = performance.now();
      document.body.dataset.traceFetchMs = (tFetched - t0).toFixed(0);
      document.body.dataset.traceRenderMs = (done - tFetched).toFixed(0);
      document.body.dataset.traceReadyMs = (done - t0).toFixed(0);
      document.body.dataset.traceSinceNavigationMs = done.toFixed(0);
      document.body.dataset.traceReady = traceId;
    }, 0));
  }

  // An incomplete trace: wait for the rest (up to a minute) and redraw when it changes.
  async function followIncomplete(traceId, params, seq, shown) {
    const until = performance.now() + 60000;
    let last = shown;
    while (performance.now() < until) {
      const r = await getJSON('/v1/traces/' + traceId + '/tree?wait=10&limit=' + TREE_PAGE_SPANS);
      if (stale(seq)) return;
      if (!r.ok || !r.data || !Array.isArray(r.data.roots)) return;
      if (r.data.span_count !== last.span_count || r.data.complete !== last.complete) {
        const scroll = window.scrollY;
        clear(app);
        renderTrace(r.data, prepare(r.data), traceId, params);
        window.scrollTo(0, scroll);
        last = r.data;
      }
      if (r.data.complete !== false) return;
    }
  }

  function renderTrace(tree, rows, traceId, params) {
    const total = Math.max(1, Number(tree.duration_ns) || 0);
    const root = rows[0];
    const services = Array.isArray(tree.services) ? tree.services.map(String) : [...new Set(rows.map((r) => r.node.service))].sort();
    services.forEach(colourOf);
    const errors = rows.filter((r) => r.error);

    // Header.
    const title = root ? [swatch(root.node.service), root.node.service, ': ', root.node.name] : ['(empty trace)'];
    const stats = h('dl', { class: 'stats', id: 'trace-stats' },
      stat('Duration', fmtDur(total)),
      stat('Spans', String(tree.span_count ?? rows.length)),
      stat('Services', String(tree.service_count ?? services.length)),
      stat('Depth', String(tree.depthMax)),
      stat('Errors', String(errors.length), errors.length ? 'err' : ''),
      stat('Started', fmtTime(tree.start) + ' (' + fmtAgo(tree.start) + ')'));
    const header = h('section', { class: 'trace-header' },
      h('h1', { id: 'trace-title' }, errors.length ? h('span', { class: 'err-mark big', title: 'this trace has errors' }, '!') : null, title),
      h('div', { class: 'trace-id' }, 'Trace ', h('code', { id: 'trace-id' }, traceId), tree.complete === false ? h('span', { class: 'badge warn', id: 'incomplete-badge', title: 'spans this trace awaits have not arrived' }, 'incomplete') : null),
      stats);
    if (tree.http_status !== undefined && tree.http_status !== null) {
      stats.prepend(stat('Status', String(tree.http_status), Number(tree.http_status) >= 400 ? 'err' : ''));
    }
    if (tree.outcome_reason) header.append(h('p', { class: 'outcome', id: 'trace-outcome' }, h('strong', null, String(tree.http_status ?? 'failed')), ': ', String(tree.outcome_reason)));
    app.append(header);
    const missing = Array.isArray(tree.missing) ? tree.missing : [];
    if (tree.complete === false && missing.length) {
      const ul = h('ul', null);
      for (const m of missing.slice(0, 20)) {
        ul.append(h('li', null, m.parent_span_id ? `span ${m.span_id} from ${m.service || 'its callee'} (called by ${m.parent_span_id})` : `parent span ${m.span_id}`));
      }
      app.append(h('section', { class: 'waiting', id: 'trace-waiting' },
        h('h2', null, 'Waiting for ' + plural(missing.length, 'span') + ' '), ul,
        h('p', { class: 'muted small' }, 'This page updates when they arrive.')));
    }

    // Where the time went: critical-path time per service.
    if (tree.criticalBySvc.length) {
      const crit = tree.criticalBySvc.reduce((a, [, t]) => a + t, 0) || 1;
      const bar = h('div', { class: 'share-bar' });
      const legend = h('ul', { class: 'share-legend' });
      for (const [svc, t] of tree.criticalBySvc) {
        const seg = h('span', { class: 'share-seg', title: `${svc}: ${fmtDur(t)} (${((t / crit) * 100).toFixed(0)}%)` });
        seg.style.width = (t / crit) * 100 + '%';
        seg.style.background = colourOf(svc);
        bar.append(seg);
        legend.append(h('li', null, swatch(svc), h('strong', null, svc), ' ' + fmtDur(t) + ' · ' + ((t / crit) * 100).toFixed(0) + '%'));
      }
      app.append(h('section', { class: 'time-share', id: 'time-share' },
        h('h2', null, 'Where the time went ', h('span', { class: 'muted small' }, '(time on the critical path, by service' + (tree.computedCritical ? ', computed in the browser' : '') + ')')),
        bar, legend));
    }

    // Why it failed.
    if (errors.length) {
      const causes = rootCauses(rows);
      const box = h('section', { class: 'failure', id: 'failure' }, h('h2', null, 'Why it failed'));
      const ul = h('ul', null);
      for (const c of causes.slice(0, 5)) {
        ul.append(h('li', null,
          h('a', { href: '#', class: 'jump-span', 'data-span-id': c.node.span_id, onclick: (e) => { e.preventDefault(); selectSpan(c.node.span_id, true); } },
            swatch(c.node.service), h('strong', null, c.node.service), ' ', c.node.name),
          ': ', h('span', { class: 'reason' }, reasonOf(c))));
      }
      box.append(ul);
      if (causes.length > 5) box.append(h('p', { class: 'muted' }, `and ${causes.length - 5} more error spans`));
      app.append(box);
    }

    // Warnings (orphans, clock skew, truncation).
    const warnings = Array.isArray(tree.warnings) ? tree.warnings.map(String) : [];
    if (warnings.length) {
      const det = h('details', { class: 'warnings', id: 'trace-warnings' }, h('summary', null, '⚠ ' + plural(warnings.length, 'warning')));
      const ul = h('ul', null);
      for (const w of warnings.slice(0, 200)) ul.append(h('li', null, w));
      det.append(ul);
      if (warnings.length <= 3) det.open = true;
      app.append(det);
    }

    // Traces linked either way (links=follow): those this trace links to and those that
    // link to it, loaded after the page shows; the section appears only when there are any.
    const linkedBox = h('section', { class: 'linked-traces', id: 'linked-traces' });
    linkedBox.hidden = true;
    app.append(linkedBox);
    getJSON('/v1/traces/' + traceId + '/tree?links=follow&limit=1').then((r) => {
      const linked = r.ok && r.data && Array.isArray(r.data.linked_traces) ? r.data.linked_traces : [];
      if (!linked.length) return;
      const ul = h('ul', null);
      for (const l of linked) {
        const t = l && l.tree ? l.tree : {};
        const tid = String(t.trace_id || '');
        const first = Array.isArray(t.roots) && t.roots.length ? t.roots[0] : null;
        const label = first ? [swatch(String(first.service || '')), h('strong', null, String(first.service || '')), ' ' + String(first.name || '')] : [tid];
        const how = l.relation === 'linked_from' ? 'links to this trace' : 'this trace links to it';
        ul.append(h('li', { 'data-relation': String(l.relation || '') },
          HEX32.test(tid) ? h('a', { href: '/trace/' + tid, 'data-nav': true }, ...label) : h('span', null, ...label),
          ' ', h('span', { class: 'muted small' }, '(' + how + ') ', h('code', null, tid))));
      }
      linkedBox.append(h('h2', null, 'Linked traces (' + linked.length + ')'), ul);
      linkedBox.hidden = false;
    });

    // A page of a huge trace: say so; "+N more" under a span loads what is below it.
    const omitted = Number(tree.spans_omitted) || 0;
    if (omitted > 0) {
      app.append(h('p', { class: 'paged muted', id: 'trace-paged' },
        `Showing ${rows.length} of ${tree.span_count} spans, the top of the trace first. `,
        '“+N more” under a span loads the spans below it.'));
    }

    // Toolbar.
    const find = h('input', { type: 'search', id: 'span-search', placeholder: 'Find in trace (name, service, attribute)', spellcheck: 'false' });
    const findCount = h('span', { class: 'muted small', id: 'span-search-count' });
    const textBtn = h('button', { type: 'button', id: 'toggle-text' }, 'Text tree');
    const expandBtn = h('button', { type: 'button', id: 'expand-all' }, 'Expand all');
    const collapseBtn = h('button', { type: 'button', id: 'collapse-all' }, 'Collapse all');
    const critBtn = h('button', { type: 'button', id: 'critical-only', 'aria-pressed': 'false', title: 'show only spans on the critical path' }, 'Critical path only');
    app.append(h('div', { class: 'toolbar' }, find, findCount, h('span', { class: 'spacer' }), critBtn, expandBtn, collapseBtn, textBtn,
      h('a', { href: '/v1/traces/' + traceId + '/tree', class: 'button', target: '_blank', rel: 'noopener noreferrer' }, 'JSON')));

    // Waterfall.
    const wf = h('div', { class: 'waterfall', id: 'waterfall', role: 'tree' });
    const ruler = h('div', { class: 'wf-row ruler' }, h('div', { class: 'wf-left' }, h('span', { class: 'muted small' }, 'Service · operation')), h('div', { class: 'wf-right' }, rulerTicks(total)));
    wf.append(ruler);
    const body = h('div', { class: 'wf-body', id: 'wf-body' });
    wf.append(body);
    const textPane = h('pre', { class: 'text-tree', id: 'text-tree' });
    textPane.hidden = true;
    app.append(wf, textPane);

    // Interaction state.
    const byId = new Map();
    for (const r of rows) if (!byId.has(r.node.span_id)) byId.set(r.node.span_id, r);
    let selected = null;
    let detailEl = null;
    let critOnly = false;

    // Rows get their DOM lazily: a row under a collapsed parent has none until it is shown,
    // so a huge trace opens with only its visible rows built.
    function applyVisibility() {
      // A row is shown when no ancestor is collapsed (and, in critical mode, it is critical).
      let prev = null; // the last row element in document order so far
      let pending = null; // a fragment of consecutive new rows, inserted after `prev`
      const flush = () => {
        if (!pending) return;
        const anchor = prev && prev.nextElementSibling && prev.nextElementSibling.classList.contains('span-detail') ? prev.nextElementSibling : prev;
        if (anchor) anchor.after(pending);
        else body.prepend(pending);
        pending = null;
      };
      for (let i = 0; i < rows.length; i++) {
        const r = rows[i];
        const show = !(critOnly && !r.critical);
        if (!r.el && show) {
          r.el = rowEl(r, total);
          if (!pending) pending = document.createDocumentFragment();
          pending.append(r.el);
        } else if (r.el) {
          flush();
          r.el.hidden = !show;
          prev = r.el;
        }
        if (r.collapsed) {
          for (let j = i + 1; j < i + r.size; j++) if (rows[j].el) { flush(); rows[j].el.hidden = true; prev = rows[j].el; }
          i += r.size - 1;
        }
      }
      flush();
      if (detailEl && selected) detailEl.hidden = selected.el.hidden;
    }

    function setCollapsed(r, c) {
      if (!r.kids.length) return;
      r.collapsed = c;
      if (!r.el) return;
      r.el.classList.toggle('collapsed', c);
      r.el.setAttribute('aria-expanded', c ? 'false' : 'true');
      const tg = r.el.querySelector('.toggle');
      tg.textContent = c ? '▸' : '▾';
      tg.title = c ? `expand (${r.size - 1} spans below)` : 'collapse';
      const hiddenCount = r.el.querySelector('.hidden-count');
      hiddenCount.textContent = c ? ` +${r.size - 1}` : '';
    }

    function selectSpan(spanId, scroll) {
      const r = byId.get(spanId);
      if (!r) return;
      for (let p = r.parent; p; p = p.parent) if (p.collapsed) setCollapsed(p, false);
      if (critOnly && !r.critical) { critOnly = false; critBtn.setAttribute('aria-pressed', 'false'); }
      applyVisibility();
      if (selected) selected.el.classList.remove('selected');
      if (detailEl) detailEl.remove();
      if (selected === r && !scroll) {
        selected = null;
        detailEl = null;
        setSpanParam(null);
        return;
      }
      selected = r;
      r.el.classList.add('selected');
      detailEl = detailPanel(r, traceId, total);
      r.el.after(detailEl);
      setSpanParam(spanId);
      if (scroll) r.el.scrollIntoView({ block: 'center' });
    }

    function setSpanParam(spanId) {
      const u = new URL(location.href);
      if (spanId) u.searchParams.set('span', spanId);
      else u.searchParams.delete('span');
      history.replaceState(null, '', u.pathname + u.search);
    }

    // Loads the spans below `spanId` (a page starting there) into the tree, then redraws.
    async function loadBelow(spanId, button) {
      const r = byId.get(spanId);
      if (!r) return;
      button.disabled = true;
      button.textContent = 'loading…';
      const got = await getJSON('/v1/traces/' + traceId + '/tree?root=' + spanId + '&limit=' + TREE_PAGE_SPANS);
      const sub = got.ok && got.data && Array.isArray(got.data.roots) ? got.data.roots[0] : null;
      if (!sub) {
        button.textContent = 'not available (HTTP ' + got.status + ')';
        return;
      }
      r.node.children = Array.isArray(sub.children) ? sub.children : [];
      r.node.children_omitted = sub.children_omitted;
      const scroll = window.scrollY;
      const newRows = prepare(tree);
      tree.spans_omitted = Math.max(0, Number(tree.span_count) - newRows.length);
      clear(app);
      renderTrace(tree, newRows, traceId, params);
      window.scrollTo(0, scroll);
    }

    body.addEventListener('click', (e) => {
      const more = e.target.closest('.load-more');
      if (more && body.contains(more)) {
        e.stopPropagation();
        loadBelow(more.dataset.spanId, more);
        return;
      }
      const rowEl = e.target.closest('.wf-row');
      if (!rowEl || !body.contains(rowEl) || e.target.closest('.span-detail')) return;
      const r = rows[Number(rowEl.dataset.index)];
      if (e.target.closest('.toggle')) {
        setCollapsed(r, !r.collapsed);
        applyVisibility();
        return;
      }
      selectSpan(r.node.span_id, false);
    });
    body.addEventListener('keydown', (e) => {
      const rowEl = e.target.closest('.wf-row');
      if (!rowEl) return;
      const r = rows[Number(rowEl.dataset.index)];
      if (e.key === 'Enter') selectSpan(r.node.span_id, false);
      else if (e.key === 'ArrowLeft' && r.kids.length) { setCollapsed(r, true); applyVisibility(); }
      else if (e.key === 'ArrowRight' && r.kids.length) { setCollapsed(r, false); applyVisibility(); }
    });
    expandBtn.addEventListener('click', () => { for (const r of rows) setCollapsed(r, false); applyVisibility(); });
    collapseBtn.addEventListener('click', () => { for (const r of rows) if (r.depth >= 1) setCollapsed(r, true); applyVisibility(); });
    critBtn.addEventListener('click', () => {
      critOnly = !critOnly;
      critBtn.setAttribute('aria-pressed', String(critOnly));
      applyVisibility();
    });
    textBtn.addEventListener('click', async () => {
      const showText = textPane.hidden;
      textPane.hidden = !showText;
      wf.hidden = showText;
      textBtn.textContent = showText ? 'Waterfall' : 'Text tree';
      if (showText && !textPane.textContent) {
        textPane.textContent = 'Loading…';
        const t = await getText('/v1/traces/' + traceId + '/tree?format=text&limit=' + TREE_PAGE_SPANS);
        textPane.textContent = t.ok ? t.text : 'The text tree is not available (HTTP ' + t.status + ').';
      }
    });

    // Search within the trace.
    let matches = [];
    let matchAt = -1;
    const haystack = (r) => {
      if (r.hay === undefined) {
        const n = r.node;
        const parts = [n.service, n.name, n.span_id, n.status_message || ''];
        for (const [k, v] of Object.entries(n.attributes || {})) parts.push(k + '=' + valueText(v));
        for (const ev of n.events || []) {
          parts.push(String(ev.name));
          for (const [k, v] of Object.entries(ev.attributes || {})) parts.push(k + '=' + valueText(v));
        }
        r.hay = parts.join('\n').toLowerCase();
      }
      return r.hay;
    };
    find.addEventListener('input', () => {
      const q = find.value.trim().toLowerCase();
      for (const r of matches) {
        r.match = false;
        if (r.el) r.el.classList.remove('match');
      }
      matches = q ? rows.filter((r) => haystack(r).includes(q)) : [];
      matchAt = -1;
      for (const r of matches) {
        r.match = true;
        for (let p = r.parent; p; p = p.parent) if (p.collapsed) setCollapsed(p, false);
      }
      applyVisibility();
      for (const r of matches) r.el.classList.add('match');
      findCount.textContent = q ? (matches.length === 1 ? '1 match' : matches.length + ' matches') + (matches.length ? ' · Enter for next' : '') : '';
      wf.classList.toggle('searching', !!q);
    });
    find.addEventListener('keydown', (e) => {
      if (e.key !== 'Enter' || !matches.length) return;
      e.preventDefault();
      matchAt = (matchAt + 1) % matches.length;
      selectSpan(matches[matchAt].node.span_id, true);
    });

    // Huge traces open with deep levels collapsed so the page stays readable and quick.
    const want = params.get('span');
    if (rows.length > 2000) for (const r of rows) if (r.depth >= 3 && r.kids.length) r.collapsed = true;
    applyVisibility();
    // Deep link to a span.
    if (want && HEX16.test(want.toLowerCase()) && byId.has(want.toLowerCase())) {
      selectSpan(want.toLowerCase(), true);
    }
  }

  function stat(label, value, cls) {
    return h('div', { class: 'stat ' + (cls || '') }, h('dt', null, label), h('dd', null, value));
  }

  function niceStep(total, n) {
    const raw = total / n;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * mag >= raw) return m * mag;
    return 10 * mag;
  }

  function rulerTicks(total) {
    const wrap = h('div', { class: 'ticks' });
    const step = niceStep(total, 5);
    for (let t = 0; t <= total + 1e-9; t += step) {
      const tick = h('span', { class: 'tick' }, fmtDur(t));
      tick.style.left = (t / total) * 100 + '%';
      if (t / total > 0.9) tick.classList.add('end');
      wrap.append(tick);
    }
    return wrap;
  }

  function rowEl(r, total) {
    const n = r.node;
    const svc = String(n.service);
    const toggle = h('span', { class: 'toggle' + (r.kids.length ? '' : ' leaf'), title: r.kids.length ? (r.collapsed ? `expand (${r.size - 1} spans below)` : 'collapse') : undefined }, r.kids.length ? (r.collapsed ? '▸' : '▾') : '');
    const indent = h('span', { class: 'indent' });
    indent.style.width = r.depth * 14 + 'px';
    const warns = Array.isArray(n.warnings) ? n.warnings.map(String) : [];
    const left = h('div', { class: 'wf-left' }, indent, toggle, swatch(svc),
      h('span', { class: 'svc' }, svc), ' ',
      h('span', { class: 'op' }, String(n.name)),
      h('span', { class: 'hidden-count muted' }, r.collapsed ? ` +${r.size - 1}` : ''),
      Number(n.children_omitted) > 0 ? h('button', { type: 'button', class: 'load-more', 'data-span-id': n.span_id, title: 'load the spans below this one' }, `+${Number(n.children_omitted)} more`) : null,
      r.error ? h('span', { class: 'err-mark', title: 'error' + (n.status_message ? ': ' + n.status_message : '') }, '!') : null,
      n.orphan ? h('span', { class: 'badge warn', title: 'the parent span ' + (n.parent_span_id || '') + ' is not in the trace' }, 'orphan') : null,
      warns.length ? h('span', { class: 'badge warn', title: warns.join('\n') }, '⚠ ' + (warns.some((w) => /skew/i.test(w)) ? 'clock skew' : 'warning')) : null);
    const bar = h('span', { class: 'bar' + (r.critical ? ' critical' : '') + (r.error ? ' err' : '') });
    const leftPct = (r.offset / total) * 100;
    const widthPct = (r.dur / total) * 100;
    bar.style.left = leftPct + '%';
    bar.style.width = `max(2px, ${widthPct}%)`;
    bar.style.background = colourOf(svc);
    const label = h('span', { class: 'bar-label' }, fmtDur(r.dur));
    if (leftPct + widthPct > 75 && leftPct > 12) {
      label.classList.add('inside-left');
      label.style.right = 100 - leftPct + '%';
    } else if (leftPct + widthPct > 75) {
      label.classList.add('in-bar');
      label.style.right = 100 - leftPct - widthPct + '%';
    } else {
      label.style.left = leftPct + widthPct + '%';
    }
    const right = h('div', { class: 'wf-right' }, bar, label);
    for (const ev of Array.isArray(n.events) ? n.events : []) {
      const at = Number(ev.offset_ns);
      if (!Number.isFinite(at)) continue;
      const name = String(ev.name || 'event');
      const mark = h('span', { class: 'event-mark' + (name === 'exception' ? ' exception' : ''), title: `${name} at +${fmtDur(at)}` });
      mark.style.left = Math.min(100, Math.max(0, (at / total) * 100)) + '%';
      right.append(mark);
    }
    const el = h('div', {
      class: 'wf-row' + (r.error ? ' error' : '') + (r.critical ? ' on-critical' : '') + (n.orphan ? ' orphan' : '') + (r.collapsed ? ' collapsed' : '') + (r.match ? ' match' : ''),
      'data-index': r.index, 'data-span-id': n.span_id, 'data-service': svc, role: 'treeitem', tabindex: 0,
      'aria-level': r.depth + 1, 'aria-expanded': r.kids.length ? String(!r.collapsed) : undefined,
    }, left, right);
    el.title = `${svc} ${n.name}\n${fmtDur(r.dur)} at +${fmtDur(r.offset)} · self ${fmtDur(r.self)}${r.critical ? ' · on the critical path' : ''}`;
    return el;
  }

  function kvTable(obj, id) {
    const entries = Object.entries(obj || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    if (!entries.length) return h('p', { class: 'muted small' }, 'none');
    const t = h('table', { class: 'kv', id });
    for (const [k, v] of entries) {
      const text = valueText(v);
      let cell;
      if (typeof v === 'string' && /^https?:\/\/[^\s]+$/i.test(v)) {
        cell = h('a', { href: v, target: '_blank', rel: 'noopener noreferrer nofollow' }, text);
      } else if (typeof v === 'string' && text.includes('\n')) {
        cell = h('pre', null, text);
      } else {
        cell = text;
      }
      t.append(h('tr', { 'data-key': k }, h('th', null, k), h('td', null, cell)));
    }
    return t;
  }

  const rawCache = new Map();
  async function rawSpan(traceId, spanId) {
    // Only this span's copies, not the whole trace.
    const key = traceId + '/' + spanId;
    if (!rawCache.has(key)) rawCache.set(key, getJSON('/v1/traces/' + traceId + '?span=' + spanId));
    const r = await rawCache.get(key);
    if (!r.ok || !r.data || !Array.isArray(r.data.spans)) return null;
    return r.data.spans.find((sp) => sp && sp.span_id === spanId) || null;
  }

  function detailPanel(r, traceId, total) {
    const n = r.node;
    const svc = String(n.service);
    const status = String(n.status || 'unset');
    const panel = h('div', { class: 'span-detail', id: 'span-detail', 'data-span-id': n.span_id });
    const link = '/trace/' + traceId + '?span=' + n.span_id;
    panel.append(
      h('div', { class: 'detail-head' },
        h('h3', null, swatch(svc), h('span', { class: 'svc' }, svc), ' ', h('span', { class: 'op' }, String(n.name))),
        h('a', { href: link, class: 'deep-link', title: 'link to this span' }, 'Link to this span')),
      h('dl', { class: 'stats small' },
        stat('Duration', fmtDur(r.dur)),
        stat('Start', '+' + fmtDur(r.offset)),
        stat('Self time', fmtDur(r.self)),
        stat('Kind', String(n.kind || '')),
        // With an error, the error box below says why (the message once, not here too).
        stat('Status', status + (n.status_message && !r.error ? ': ' + n.status_message : ''), status === 'error' ? 'err' : ''),
        stat('Critical path', r.critical ? 'yes' : 'no'),
        stat('Span id', String(n.span_id)),
        stat('Parent', n.parent_span_id ? String(n.parent_span_id) : '—')));
    const ex = exceptionOf(n);
    const reason = r.error ? reasonOf(r) : '';
    if (r.error) {
      panel.append(h('div', { class: 'error-box', id: 'span-error' }, h('strong', null, 'Error: '), reason));
    }
    if (Array.isArray(n.warnings) && n.warnings.length) {
      panel.append(h('div', { class: 'warn-box' }, n.warnings.map((w) => h('div', null, '⚠ ' + String(w)))));
    }
    panel.append(h('h4', null, 'Attributes'), kvTable(n.attributes, 'span-attributes'));
    const events = Array.isArray(n.events) ? n.events : [];
    panel.append(h('h4', null, 'Events (' + events.length + ')'));
    if (events.length) {
      const ul = h('ul', { class: 'events', id: 'span-events' });
      for (const ev of events) {
        const a = (ev && ev.attributes) || {};
        const isEx = ev.name === 'exception' || a['exception.type'] !== undefined;
        const off = ev.offset_ns !== undefined ? Number(ev.offset_ns) : Number(ev.time_unix_nano) - (r.start - r.offset);
        const li = h('li', { class: isEx ? 'exception' : '' }, h('span', { class: 'ev-time' }, '+' + fmtDur(off)), ' ', h('strong', null, String(ev.name)));
        if (isEx) {
          // The message is shown once: left out here when the error box above has it.
          const message = a['exception.message'] !== undefined && !(reason && reason.includes(valueText(a['exception.message']))) ? a['exception.message'] : undefined;
          li.append(h('div', { class: 'ex-line' }, [a['exception.type'], message].filter((x) => x !== undefined).map(valueText).join(': ')));
          if (a['exception.stacktrace'] !== undefined) li.append(h('pre', { class: 'stack' }, valueText(a['exception.stacktrace'])));
          const rest = Object.fromEntries(Object.entries(a).filter(([k]) => !['exception.type', 'exception.message', 'exception.stacktrace'].includes(k)));
          if (Object.keys(rest).length) li.append(kvTable(rest));
        } else if (Object.keys(a).length) {
          li.append(kvTable(a));
        }
        ul.append(li);
      }
      panel.append(ul);
    } else {
      void ex;
    }
    const links = Array.isArray(n.links) ? n.links : [];
    if (links.length) {
      panel.append(h('h4', null, 'Links (' + links.length + ')'));
      const ul = h('ul', { class: 'links' });
      for (const l of links) {
        const tid = String(l.trace_id || '');
        const sid = String(l.span_id || '');
        const target = HEX32.test(tid) ? '/trace/' + tid + (HEX16.test(sid) ? '?span=' + sid : '') : null;
        ul.append(h('li', null, target ? h('a', { href: target, 'data-nav': true }, tid + ' / ' + sid) : tid + ' / ' + sid, Object.keys(l.attributes || {}).length ? kvTable(l.attributes) : null));
      }
      panel.append(ul);
    }
    const linkedFrom = Array.isArray(n.linked_from) ? n.linked_from : [];
    if (linkedFrom.length) {
      panel.append(h('h4', null, 'Linked from (' + linkedFrom.length + ')'));
      const ul = h('ul', { class: 'links' });
      for (const l of linkedFrom) {
        const sid = String(l.span_id || '');
        const label = String(l.service || '') + ' ' + String(l.name || '') + ' [' + String(l.kind || '') + '] ' + sid;
        const target = HEX32.test(String(traceId)) && HEX16.test(sid) ? '/trace/' + traceId + '?span=' + sid : null;
        ul.append(h('li', null, target ? h('a', { href: target, 'data-nav': true }, label) : label));
      }
      panel.append(ul);
    }
    const res = h('div', { class: 'resource' }, h('p', { class: 'muted small' }, 'Loading…'));
    panel.append(h('h4', null, 'Resource'), res);
    rawSpan(traceId, n.span_id).then((raw) => {
      clear(res);
      if (raw && raw.resource_attributes && typeof raw.resource_attributes === 'object') res.append(kvTable(raw.resource_attributes, 'span-resource'));
      else res.append(h('p', { class: 'muted small' }, 'not available'));
    });
    void total;
    return panel;
  }

  // ---------------------------------------------------------------- service map

  async function mapView(params, seq) {
    document.title = 'Service map · Spanline';
    const lookback = params.get('lookback') || '1h';
    const lb = select('lookback', LOOKBACKS.filter(([v]) => LOOKBACK_S[v]), lookback);
    lb.addEventListener('change', () => navigate('/map?lookback=' + encodeURIComponent(lb.value)));
    const status = h('p', { class: 'muted small', id: 'map-source' }, 'Loading…');
    const graphWrap = h('div', { class: 'graph-wrap', id: 'graph' });
    const tables = h('div', { class: 'stats-tables', id: 'service-stats' });
    app.append(h('div', { class: 'map-page' }, h('div', { class: 'map-head' }, h('h1', null, 'Service map'), field('Time', lb)), status, graphWrap, tables));
    loadServices();

    const windowS = LOOKBACK_S[lookback] || 3600;
    const [dep, stats] = await Promise.all([
      getJSON('/v1/dependencies?lookback=' + encodeURIComponent(lookback)),
      getJSON('/v1/stats?window=' + encodeURIComponent(lookback)),
    ]);
    if (stale(seq)) return;
    let deps = dep.ok && dep.data && Array.isArray(dep.data.dependencies) ? dep.data : null;
    let st = stats.ok && stats.data && Array.isArray(stats.data.services) ? stats.data : null;
    let note = 'From the collector (/v1/dependencies, /v1/stats), last ' + lookback + '.';
    if (!deps || !st) {
      const local = await computeLocally(windowS);
      if (stale(seq)) return;
      if (!deps) deps = local.deps;
      if (!st) st = local.stats;
      note = `Computed in the browser from the ${plural(local.sampled, 'most recent trace')} of the last ${lookback} (this collector has no ${[!dep.ok && '/v1/dependencies', !stats.ok && '/v1/stats'].filter(Boolean).join(' or ')}).`;
    }
    status.textContent = note + ' ' + rateNote(st, lookback);
    await loadServices();
    if (stale(seq)) return;
    graphWrap.append(drawGraph(deps));
    tables.append(statsTable('Services', st.services || [], false, 'services-table'));
    if (Array.isArray(st.operations) && st.operations.length) tables.append(statsTable('Operations', st.operations, true, 'operations-table'));
  }

  // Which span of time the rates were computed over (GET /v1/stats: the part of the window
  // that had traffic).
  function rateNote(st, lookback) {
    const secs = Number(st.rate_window_s);
    if (st.traffic_start_unix_nano != null && secs > 0) {
      return `Rates are per second over the ${fmtDur(secs * 1e9)} that had traffic (${fmtTime(Number(st.traffic_start_unix_nano))} to ${fmtTime(Number(st.traffic_end_unix_nano))}), not over the whole ${lookback}.`;
    }
    return `Rates are over the whole ${lookback}.`;
  }

  async function computeLocally(windowS) {
    const start = Date.now() / 1000 - windowS;
    const r = await getJSON('/v1/traces?limit=100&start_time=' + start.toFixed(3));
    const list = r.ok && Array.isArray(r.data) ? r.data.filter((t) => t && HEX32.test(String(t.trace_id))) : [];
    const trees = await Promise.all(list.map((t) => getJSON('/v1/traces/' + t.trace_id + '/tree')));
    const edges = new Map();
    const svcs = new Set();
    const samples = new Map(); // key -> {durs, errors}
    const add = (key, svc, op, dur, err) => {
      if (!samples.has(key)) samples.set(key, { service: svc, operation: op, durs: [], errors: 0 });
      const e = samples.get(key);
      e.durs.push(dur);
      if (err) e.errors++;
    };
    for (const t of trees) {
      if (!t.ok || !t.data || !Array.isArray(t.data.roots)) continue;
      const stack = t.data.roots.map((n) => [n, null]);
      while (stack.length) {
        const [n, p] = stack.pop();
        const svc = String(n.service);
        svcs.add(svc);
        const err = n.status === 'error';
        // A service's "request" is a span whose parent is in another service (or none).
        if (!p || String(p.service) !== svc) {
          add('s:' + svc, svc, null, Number(n.duration_ns) || 0, err);
          add('o:' + svc + '\u0000' + n.name, svc, String(n.name), Number(n.duration_ns) || 0, err);
        }
        if (p && String(p.service) !== svc) {
          const name = String(n.name);
          const via = p.kind === 'producer' && n.kind === 'consumer' && name.includes(' ') ? name.slice(name.indexOf(' ') + 1) : null;
          const k = String(p.service) + '\u0000' + svc + '\u0000' + (via || '');
          if (!edges.has(k)) edges.set(k, { parent: String(p.service), child: svc, via, call_count: 0, error_count: 0 });
          const e = edges.get(k);
          e.call_count++;
          if (err) e.error_count++;
        }
        for (const c of n.children || []) stack.push([c, n]);
      }
    }
    const q = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)] : 0);
    const services = [], operations = [];
    for (const [key, e] of samples) {
      const d = e.durs.sort((a, b) => a - b);
      const row = { service: e.service, operation: e.operation, request_count: d.length, error_count: e.errors, error_rate: d.length ? e.errors / d.length : 0, rate_per_s: d.length / windowS, p50_ns: q(d, 0.5), p95_ns: q(d, 0.95), p99_ns: q(d, 0.99) };
      (key.startsWith('s:') ? services : operations).push(row);
    }
    return { deps: { dependencies: [...edges.values()], services: [...svcs] }, stats: { window_s: windowS, services, operations }, sampled: list.length };
  }

  // Points along the cubic Bézier with control points c (4 [x, y] pairs).
  function bezierPoints(c, n) {
    const out = [];
    for (let i = 0; i <= n; i++) out.push(pointAt(c, i / n));
    return out;
  }

  // Label boxes for the edges of `geo` ({c, text, points}), avoiding the node boxes `nodes`:
  // {boxes, conflicts}. Candidates run along the edge from its middle outwards, on and beside
  // the line; a box is clear when it overlaps no placed label and no node and no point of
  // another edge lies in it (with a margin). Without a clear spot, the candidate with the
  // least overlap wins and counts in `conflicts` (0: every label is clear).
  const EDGE_LABEL_CHAR_W = 6.6, EDGE_LABEL_H = 16, EDGE_LABEL_MARGIN = 3;
  function placeEdgeLabels(geo, nodes) {
    const overlaps = (a, b) => a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
    const grow = (b, m) => ({ x: b.x - m, y: b.y - m, w: b.w + 2 * m, h: b.h + 2 * m });
    const ts = [0.5];
    for (let d = 0.05; d <= 0.4; d += 0.05) ts.push(0.5 - d, 0.5 + d);
    const placed = [];
    let conflicts = 0;
    for (let i = 0; i < geo.length; i++) {
      const w = geo[i].text.length * EDGE_LABEL_CHAR_W + 10, hgt = EDGE_LABEL_H;
      let best = null, bestScore = Infinity;
      for (const t of ts) {
        const [px, py] = pointAt(geo[i].c, t);
        for (const dy of [0, -hgt, hgt, -1.8 * hgt, 1.8 * hgt]) {
          const box = { x: px - w / 2, y: py - hgt / 2 + dy, w, h: hgt };
          const wide = grow(box, EDGE_LABEL_MARGIN);
          let score = 0;
          for (const p of placed) if (overlaps(wide, p)) score += 100;
          for (const n of nodes) if (overlaps(wide, n)) score += 50;
          geo.forEach((other, j) => {
            if (j === i) return;
            for (const [x, y] of other.points) if (x >= wide.x && x <= wide.x + wide.w && y >= wide.y && y <= wide.y + wide.h) score += 10;
          });
          if (score < bestScore) {
            best = box;
            bestScore = score;
          }
          if (score === 0) break;
        }
        if (bestScore === 0) break;
      }
      placed.push(best);
      conflicts += bestScore;
    }
    return { boxes: placed, conflicts };
  }

  // The point at t in [0, 1] of the cubic Bézier with control points c.
  function pointAt(c, t) {
    const u = 1 - t;
    const k = [u * u * u, 3 * u * u * t, 3 * u * t * t, t * t * t];
    return [0, 1].map((dim) => k.reduce((sum, w, j) => sum + w * c[j][dim], 0));
  }

  function drawGraph(data) {
    const edges = (data.dependencies || []).filter((e) => e && e.parent !== undefined && e.child !== undefined).map((e) => ({ ...e, parent: String(e.parent), child: String(e.child) }));
    const names = new Set((data.services || []).map((x) => String(typeof x === 'object' && x ? x.name ?? x.service : x)));
    for (const e of edges) { names.add(e.parent); names.add(e.child); }
    const nodes = [...names].filter((n) => n !== 'undefined').sort();
    if (!nodes.length) return h('p', { class: 'muted' }, 'No services seen in this time range.');
    // Layers: longest path from a service nobody calls (cycles are cut by a visit bound).
    const level = new Map(nodes.map((n) => [n, 0]));
    for (let i = 0; i < nodes.length; i++) {
      let changed = false;
      for (const e of edges) {
        if (e.parent === e.child) continue;
        if (level.get(e.child) < level.get(e.parent) + 1 && level.get(e.parent) + 1 < nodes.length) {
          level.set(e.child, level.get(e.parent) + 1);
          changed = true;
        }
      }
      if (!changed) break;
    }
    const layers = [];
    for (const n of nodes) (layers[level.get(n)] ||= []).push(n);
    const NW = 150, NH = 46, GY = 40;
    const maxRows = Math.max(...layers.map((l) => (l ? l.length : 0)));
    const H = Math.max(140, maxRows * (NH + GY) - GY + 40);
    // Edges as cubic Béziers, then their labels (placeEdgeLabels). When some label finds no
    // spot clear of other labels, nodes and other edges' lines, the layers move apart and the
    // layout is tried again; the clearest layout wins.
    const layout = (GX) => {
      const pos = new Map();
      layers.forEach((l, i) => (l || []).forEach((n, j) => {
        const offset = (H - (l.length * (NH + GY) - GY)) / 2;
        pos.set(n, { x: 20 + i * (NW + GX), y: offset + j * (NH + GY) });
      }));
      const geo = [];
      for (const e of edges) {
        const a = pos.get(e.parent), b = pos.get(e.child);
        if (!a || !b) continue;
        let c;
        if (e.parent === e.child) {
          c = [[a.x + NW - 30, a.y], [a.x + NW, a.y - 40], [a.x + NW + 30, a.y + 10], [a.x + NW, a.y + 14]];
        } else if (b.x <= a.x + NW) {
          c = [[a.x + NW / 2, a.y + NH], [a.x + NW / 2, H], [b.x + NW / 2, H], [b.x + NW / 2, b.y + NH]];
        } else {
          const x1 = a.x + NW, y1 = a.y + NH / 2, x2 = b.x, y2 = b.y + NH / 2, mx = (x1 + x2) / 2;
          c = [[x1, y1], [mx, y1], [mx, y2], [x2, y2]];
        }
        const err = Number(e.error_count) > 0;
        // A queue hop names its destination and counts messages (processed deliveries).
        const count = e.via ? String(e.via) + ' · ' + plural(Number(e.call_count) || 0, 'message') : plural(Number(e.call_count) || 0, 'call');
        const text = count + (err ? ` · ${Number(e.error_count)} err` : '');
        geo.push({ e, err, c, text, points: bezierPoints(c, 96) });
      }
      const placed = placeEdgeLabels(geo, [...pos.values()].map((p) => ({ x: p.x, y: p.y, w: NW, h: NH })));
      return { GX, pos, geo, boxes: placed.boxes, conflicts: placed.conflicts };
    };
    let best = null;
    for (const GX of [120, 180, 260, 360]) {
      const tried = layout(GX);
      if (!best || tried.conflicts < best.conflicts) best = tried;
      if (best.conflicts === 0) break;
    }
    const { GX, pos, geo, boxes } = best;
    const W = Math.max(400, layers.length * (NW + GX) - GX + 40);
    const svg = s('svg', { class: 'graph', id: 'dependency-graph', viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: 'img', 'aria-label': 'Service dependency graph' });
    svg.append(s('defs', null,
      s('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead' })),
      s('marker', { id: 'arrow-err', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' }, s('path', { d: 'M0,0 L10,5 L0,10 z', class: 'arrowhead err' }))));
    geo.forEach((g, i) => {
      const { e, err, c, text } = g;
      const box = boxes[i];
      const d = `M${c[0][0]},${c[0][1]} C${c[1][0]},${c[1][1]} ${c[2][0]},${c[2][1]} ${c[3][0]},${c[3][1]}`;
      const via = e.via ? { 'data-via': String(e.via) } : {};
      svg.append(s('g', { class: 'edge' + (err ? ' err' : '') + (e.via ? ' queue' : ''), 'data-parent': e.parent, 'data-child': e.child, ...via },
        s('path', { d, 'marker-end': err ? 'url(#arrow-err)' : 'url(#arrow)' }),
        s('rect', { x: box.x, y: box.y, width: box.w, height: box.h, rx: 3, class: 'edge-label-bg' }),
        s('text', { x: box.x + box.w / 2, y: box.y + box.h - 4, 'text-anchor': 'middle', class: 'edge-label' }, text),
        s('title', null, e.via
          ? `${e.parent} → ${e.via} → ${e.child}: ${Number(e.call_count) || 0} messages processed, ${Number(e.error_count) || 0} errors`
          : `${e.parent} → ${e.child}: ${Number(e.call_count) || 0} calls, ${Number(e.error_count) || 0} errors`)));
    });
    for (const n of nodes) {
      const p = pos.get(n);
      const label = n.length > 20 ? n.slice(0, 19) + '…' : n;
      const g = s('g', { class: 'node', 'data-service': n, tabindex: 0 },
        s('rect', { x: p.x, y: p.y, width: NW, height: NH, rx: 8 }),
        s('rect', { x: p.x, y: p.y, width: 8, height: NH, rx: 3, class: 'node-colour', fill: colourOf(n) }),
        s('text', { x: p.x + NW / 2 + 4, y: p.y + NH / 2 + 5, 'text-anchor': 'middle' }, label),
        s('title', null, n + ' — click to search its traces'));
      const open = () => navigate('/?service=' + encodeURIComponent(n));
      g.addEventListener('click', open);
      g.addEventListener('keydown', (ev) => { if (ev.key === 'Enter') open(); });
      svg.append(g);
    }
    return svg;
  }

  function statsTable(title, list, withOp, id) {
    const rowsSorted = [...list].sort((a, b) => String(a.service).localeCompare(String(b.service)) || String(a.operation || '').localeCompare(String(b.operation || '')));
    const t = h('table', { class: 'stats-table', id },
      h('thead', null, h('tr', null, h('th', null, 'Service'), withOp ? h('th', null, 'Operation') : null, h('th', { class: 'num' }, 'Requests'), h('th', { class: 'num', title: 'requests per second (or minute) while there was traffic: see the note above the map' }, 'Rate'), h('th', { class: 'num' }, 'Error rate'), h('th', { class: 'num' }, 'p50'), h('th', { class: 'num' }, 'p95'), h('th', { class: 'num' }, 'p99'))));
    const tb = h('tbody');
    for (const r of rowsSorted) {
      const er = Number(r.error_rate ?? (r.request_count ? r.error_count / r.request_count : 0)) || 0;
      const rate = Number(r.rate_per_s) || 0;
      tb.append(h('tr', { 'data-service': String(r.service) },
        h('td', null, serviceChip(String(r.service))),
        withOp ? h('td', null, String(r.operation ?? '')) : null,
        h('td', { class: 'num' }, String(Number(r.request_count) || 0)),
        h('td', { class: 'num' }, rate >= 1 ? rate.toFixed(1) + '/s' : (rate * 60).toFixed(1) + '/min'),
        h('td', { class: 'num' + (er > 0 ? ' err-text' : '') }, (er * 100).toFixed(1) + '%'),
        h('td', { class: 'num' }, fmtDur(r.p50_ns)),
        h('td', { class: 'num' }, fmtDur(r.p95_ns)),
        h('td', { class: 'num' }, fmtDur(r.p99_ns))));
    }
    t.append(tb);
    return h('section', null, h('h2', null, title), list.length ? t : h('p', { class: 'muted' }, 'No requests in this time range.'));
  }

  route();
})();

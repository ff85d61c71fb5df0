// The dispatch live page. It keeps its own copy of the heroes, applies the
// server's snapshot and deltas to it, and sends commands over the same
// WebSocket. No framework, no build step.
'use strict';

(() => {
  const $ = (sel) => document.querySelector(sel);
  const el = {
    conn: $('#conn'),
    sync: $('#sync'),
    cities: $('#cities'),
    tbody: $('#heroes tbody'),
    empty: $('#empty'),
    count: $('#hero-count'),
    flash: $('#flash'),
    log: $('#log'),
    createForm: $('#create-form'),
    createName: $('#create-name'),
    create: $('#create'),
    bombForm: $('#bomb-form'),
    bombCity: $('#bomb-city'),
    bomb: $('#bomb'),
  };

  const state = {
    heroes: new Map(),   // id -> hero
    rows: new Map(),     // id -> <tr>
    cluster: { cities: [], in_sync: false },
    ws: null,
    attempt: 0,
    nextRef: 1,
    pending: new Map(),  // ref -> {resolve, reject, timer}
  };

  const LOG_MAX = 100;
  const FLASH_MS = 8000;
  const REPLY_MS = 10000;

  // ---- connection ----

  function connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let ws;
    try {
      ws = new WebSocket(`${proto}//${location.host}/ws`);
    } catch (err) {
      scheduleReconnect(`cannot connect: ${err.message}`);
      return;
    }
    state.ws = ws;
    setConn('connecting', 'connecting…');
    ws.addEventListener('open', () => setConn('open', 'live'));
    ws.addEventListener('message', (e) => {
      let msg;
      try {
        msg = JSON.parse(e.data);
      } catch {
        return;
      }
      handle(msg);
    });
    ws.addEventListener('close', (e) => {
      if (state.ws !== ws) return;
      state.ws = null;
      for (const [ref, p] of state.pending) {
        clearTimeout(p.timer);
        p.reject(new Error('connection lost'));
        state.pending.delete(ref);
      }
      scheduleReconnect(`disconnected${e.code ? ` (${e.code})` : ''}`);
    });
  }

  function scheduleReconnect(why) {
    const base = Math.min(10000, 500 * 2 ** state.attempt);
    state.attempt++;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    setConn('closed', `${why}; retrying in ${Math.max(1, Math.round(delay / 1000))} s`);
    logEvent(`${why}; reconnecting`);
    setTimeout(connect, delay);
  }

  function setConn(s, text) {
    el.conn.dataset.state = s;
    el.conn.textContent = text;
    document.body.dataset.conn = s;
    const live = s === 'open';
    el.create.disabled = !live;
    el.bomb.disabled = !live;
  }

  // send sends a command and resolves with the server's "ok" reply.
  function send(cmd) {
    const ws = state.ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error('not connected'));
    }
    const ref = state.nextRef++;
    ws.send(JSON.stringify({ ...cmd, ref }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        state.pending.delete(ref);
        reject(new Error('no reply from dispatch'));
      }, REPLY_MS);
      state.pending.set(ref, { resolve, reject, timer });
    });
  }

  function handle(msg) {
    switch (msg.type) {
      case 'snapshot': return onSnapshot(msg);
      case 'delta': return onDelta(msg.heroes || []);
      case 'cluster': return onCluster(msg.cluster);
      case 'flash':
        showFlash(msg.message, 'flash');
        logEvent(msg.message);
        return;
      case 'ok':
      case 'error': {
        const p = state.pending.get(msg.ref);
        if (!p) return;
        state.pending.delete(msg.ref);
        clearTimeout(p.timer);
        if (msg.type === 'ok') p.resolve(msg);
        else p.reject(new Error(msg.error || `error ${msg.status}`));
        return;
      }
    }
  }

  // ---- state updates ----

  function onSnapshot(msg) {
    state.attempt = 0;
    const next = new Map((msg.heroes || []).map((h) => [h.id, h]));
    for (const id of state.rows.keys()) {
      if (!next.has(id)) removeRow(id);
    }
    state.heroes = next;
    state.cluster = msg.cluster || { cities: [], in_sync: false };
    syncCityOptions();
    for (const h of next.values()) upsertRow(h, false);
    renderCities();
    renderCount();
    logEvent(`connected: ${next.size} superhero${next.size === 1 ? '' : 'es'}`);
  }

  function onDelta(heroes) {
    const lines = [];
    for (const h of heroes) {
      const prev = state.heroes.get(h.id);
      if (h.dead) {
        if (prev) lines.push(`${h.name} is dead`);
        state.heroes.delete(h.id);
        removeRow(h.id);
        continue;
      }
      lines.push(...describe(prev, h));
      state.heroes.set(h.id, h);
      upsertRow(h, true);
    }
    renderCities();
    renderCount();
    if (lines.length > 6) logEvent(`${heroes.length} superheroes updated`);
    else lines.forEach(logEvent);
  }

  function describe(prev, h) {
    if (!prev) return [`${h.name} joined`];
    const out = [];
    if (prev.location !== h.location) {
      out.push(h.location === 'home' ? `${h.name} went home` : `${h.name} assigned to ${h.location}`);
    }
    if (!prev.is_patrolling && h.is_patrolling) out.push(`${h.name} is patrolling ${h.location}`);
    if (h.health < prev.health) out.push(`${h.name} took ${prev.health - h.health} damage (${h.health} left)`);
    if (h.health > prev.health) out.push(`${h.name} healed to ${h.health}`);
    return out;
  }

  function onCluster(cluster) {
    if (!cluster) return;
    const before = new Map(state.cluster.cities.map((c) => [c.name, c.up]));
    for (const c of cluster.cities) {
      const was = before.get(c.name);
      if (was === true && !c.up) logEvent(`${c.name} is down`);
      if (was === false && c.up) logEvent(`${c.name} is back up`);
    }
    state.cluster = cluster;
    syncCityOptions();
    renderCities();
  }

  // ---- rendering ----

  function cityNames() {
    return state.cluster.cities.map((c) => c.name);
  }

  // majorityDigest returns the digest held by more than half of the up
  // cities, or null.
  function majorityDigest(up) {
    const counts = new Map();
    for (const c of up) counts.set(c.digest, (counts.get(c.digest) || 0) + 1);
    for (const [d, n] of counts) if (n * 2 > up.length) return d;
    return null;
  }

  function renderCities() {
    const cities = state.cluster.cities;
    const up = cities.filter((c) => c.up);
    const major = state.cluster.in_sync ? null : majorityDigest(up);
    const seen = new Set();
    for (const c of cities) {
      seen.add(c.name);
      let card = [...el.cities.children].find((n) => n.dataset.city === c.name);
      if (!card) {
        card = cityCard(c.name);
        el.cities.append(card);
      }
      let heroes = 0;
      let patrolling = 0;
      for (const h of state.heroes.values()) {
        if (h.location !== c.name) continue;
        heroes++;
        if (h.is_patrolling) patrolling++;
      }
      let sync = 'unknown';
      if (c.up) sync = state.cluster.in_sync || c.digest === major ? 'in-sync' : 'diverged';
      card.dataset.state = c.up ? 'up' : 'down';
      card.dataset.sync = sync;
      setText(card.querySelector('.state'), c.up ? 'up' : 'down');
      setText(card.querySelector('.sync'), { 'in-sync': 'in sync', diverged: 'diverged', unknown: 'no data' }[sync]);
      setText(card.querySelector('.heroes'), String(heroes));
      setText(card.querySelector('.patrolling'), String(patrolling));
      setText(card.querySelector('.replica'), c.up ? `replica: ${c.heroes} live · ${c.digest.slice(0, 8)}` : 'replica: unreachable');
    }
    for (const card of el.cities.querySelectorAll('[data-city]')) {
      if (!seen.has(card.dataset.city)) card.remove();
    }
    const s = cities.length === 0 ? 'unknown' : state.cluster.in_sync ? 'in-sync' : 'diverged';
    el.sync.dataset.state = s;
    el.sync.textContent = { unknown: 'sync unknown', 'in-sync': 'all replicas in sync', diverged: 'replicas diverged: converging' }[s];
  }

  function cityCard(name) {
    const card = document.createElement('article');
    card.className = 'city';
    card.dataset.city = name;
    const head = document.createElement('header');
    const h3 = document.createElement('h3');
    h3.textContent = name;
    const st = document.createElement('span');
    st.className = 'badge state';
    head.append(h3, st);
    const p = document.createElement('p');
    p.append(span('heroes'), ' heroes · ', span('patrolling'), ' patrolling');
    const rep = document.createElement('p');
    rep.className = 'replica';
    const sync = document.createElement('p');
    sync.append(span('badge sync'));
    card.append(head, p, rep, sync);
    return card;
  }

  function span(cls) {
    const s = document.createElement('span');
    s.className = cls;
    return s;
  }

  function setText(node, text) {
    if (node && node.textContent !== text) node.textContent = text;
  }

  function renderCount() {
    el.count.textContent = String(state.heroes.size);
    el.empty.hidden = state.heroes.size > 0;
  }

  function compareHeroes(a, b) {
    if (a.name !== b.name) return a.name < b.name ? -1 : 1;
    return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
  }

  // upsertRow updates the hero's row in place, or inserts it at its sorted
  // place. Existing rows never move, so focus inside them is kept.
  function upsertRow(h, highlight) {
    let tr = state.rows.get(h.id);
    if (!tr) {
      tr = buildRow(h);
      let before = null;
      for (const [id, row] of state.rows) {
        const other = state.heroes.get(id);
        if (other && compareHeroes(h, other) < 0 && (!before || compareHeroes(other, state.heroes.get(before.dataset.heroId)) < 0)) {
          before = row;
        }
      }
      el.tbody.insertBefore(tr, before);
      state.rows.set(h.id, tr);
    }
    updateRow(tr, h);
    if (highlight) {
      tr.classList.remove('flash-row');
      void tr.offsetWidth; // restart the animation
      tr.classList.add('flash-row');
    }
  }

  function removeRow(id) {
    const tr = state.rows.get(id);
    if (!tr) return;
    state.rows.delete(id);
    tr.remove();
  }

  function buildRow(h) {
    const tr = document.createElement('tr');
    tr.dataset.heroId = h.id;

    const name = document.createElement('th');
    name.scope = 'row';
    name.className = 'name';

    const health = document.createElement('td');
    health.className = 'health';
    health.dataset.label = 'Health';
    const meter = document.createElement('meter');
    Object.assign(meter, { min: 0, max: 100, low: 34, high: 67, optimum: 100 });
    const hp = span('hp');
    health.append(meter, ' ', hp);

    const status = document.createElement('td');
    status.className = 'status';
    status.dataset.label = 'Status';
    status.append(span('badge'));

    const loc = document.createElement('td');
    loc.className = 'location';
    loc.dataset.label = 'Location';

    const assign = document.createElement('td');
    assign.className = 'assign';
    const form = document.createElement('form');
    const sel = document.createElement('select');
    sel.name = 'location';
    sel.className = 'assign-select';
    const go = document.createElement('button');
    go.type = 'submit';
    go.className = 'secondary';
    go.textContent = 'Assign';
    form.append(sel, go);
    assign.append(form);
    sel.addEventListener('change', () => { tr.dataset.dirty = '1'; });
    sel.addEventListener('blur', () => syncOptions(sel, state.heroes.get(h.id)));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const hero = state.heroes.get(h.id);
      if (!hero) return;
      const to = sel.value;
      go.disabled = true;
      send({ op: 'assign', id: h.id, location: to })
        .then(() => logEvent(`you assigned ${hero.name} to ${to}`))
        .catch((err) => showFlash(`Could not assign ${hero.name}: ${err.message}`, 'error'))
        .finally(() => {
          go.disabled = false;
          delete tr.dataset.dirty;
          const now = state.heroes.get(h.id);
          if (now && document.activeElement !== sel) sel.value = now.location;
        });
    });

    const actions = document.createElement('td');
    actions.className = 'actions';
    const term = document.createElement('button');
    term.type = 'button';
    term.className = 'danger terminate';
    term.textContent = 'Terminate';
    term.addEventListener('click', () => {
      const hero = state.heroes.get(h.id);
      if (!hero) return;
      term.disabled = true;
      send({ op: 'delete', id: h.id })
        .then(() => logEvent(`you terminated ${hero.name}`))
        .catch((err) => {
          term.disabled = false;
          showFlash(`Could not terminate ${hero.name}: ${err.message}`, 'error');
        });
    });
    actions.append(term);

    tr.append(name, health, status, loc, assign, actions);
    return tr;
  }

  function updateRow(tr, h) {
    const patrolling = h.is_patrolling ? 'patrolling' : 'idle';
    tr.dataset.state = patrolling;
    tr.dataset.location = h.location;
    tr.dataset.health = String(h.health);
    setText(tr.querySelector('.name'), h.name);
    const meter = tr.querySelector('meter');
    if (meter.value !== h.health) meter.value = h.health;
    meter.title = `${h.health} / 100`;
    setText(tr.querySelector('.hp'), String(h.health));
    setText(tr.querySelector('.status .badge'), h.is_patrolling ? 'Patrolling' : 'Idle');
    setText(tr.querySelector('.location'), h.location);
    const sel = tr.querySelector('select');
    sel.setAttribute('aria-label', `New location for ${h.name}`);
    tr.querySelector('.terminate').setAttribute('aria-label', `Terminate ${h.name}`);
    syncOptions(sel, h);
  }

  // syncOptions makes the drop-down list home and every known city, and
  // show the hero's location, unless the user is using it.
  function syncOptions(sel, h) {
    if (!h || document.activeElement === sel) return;
    const want = ['home', ...cityNames()];
    if (!want.includes(h.location)) want.push(h.location);
    const have = [...sel.options].map((o) => o.value);
    if (have.join('\n') !== want.join('\n')) {
      const keep = sel.value;
      sel.replaceChildren(...want.map((v) => new Option(v, v)));
      sel.value = keep && want.includes(keep) ? keep : h.location;
    }
    if (!sel.closest('tr').dataset.dirty && sel.value !== h.location) sel.value = h.location;
  }

  function syncCityOptions() {
    for (const [id, tr] of state.rows) syncOptions(tr.querySelector('select'), state.heroes.get(id));
    const sel = el.bombCity;
    if (document.activeElement === sel) return;
    const want = ['', ...cityNames()];
    const have = [...sel.options].map((o) => o.value);
    if (have.join('\n') === want.join('\n')) return;
    const keep = sel.value;
    sel.replaceChildren(...want.map((v) => new Option(v || 'random city', v)));
    sel.value = want.includes(keep) ? keep : '';
  }

  // ---- flash and log ----

  function showFlash(text, kind) {
    const p = document.createElement('p');
    p.className = 'msg';
    p.dataset.kind = kind;
    const t = document.createElement('span');
    t.textContent = text;
    const x = document.createElement('button');
    x.type = 'button';
    x.textContent = '×';
    x.setAttribute('aria-label', 'Dismiss');
    x.addEventListener('click', () => p.remove());
    p.append(t, x);
    el.flash.prepend(p);
    while (el.flash.children.length > 3) el.flash.lastElementChild.remove();
    setTimeout(() => p.remove(), FLASH_MS);
  }

  function logEvent(text) {
    const li = document.createElement('li');
    const time = document.createElement('time');
    const now = new Date();
    time.dateTime = now.toISOString();
    time.textContent = now.toLocaleTimeString([], { hour12: false });
    li.append(time, text);
    el.log.prepend(li);
    while (el.log.children.length > LOG_MAX) el.log.lastElementChild.remove();
  }

  // ---- controls ----

  el.createForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = el.createName.value.trim();
    const cmd = { op: 'create' };
    if (name) cmd.name = name;
    el.create.disabled = true;
    send(cmd)
      .then((r) => {
        el.createName.value = '';
        logEvent(`you created ${r.hero ? r.hero.name : 'a superhero'}`);
      })
      .catch((err) => showFlash(`Could not create a superhero: ${err.message}`, 'error'))
      .finally(() => { el.create.disabled = !state.ws || state.ws.readyState !== WebSocket.OPEN; });
  });

  el.bombForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const cmd = { op: 'bomb' };
    if (el.bombCity.value) cmd.city = el.bombCity.value;
    el.bomb.disabled = true;
    send(cmd)
      .catch((err) => showFlash(`Could not destroy a city: ${err.message}`, 'error'))
      .finally(() => { el.bomb.disabled = !state.ws || state.ws.readyState !== WebSocket.OPEN; });
  });

  el.bombCity.addEventListener('blur', syncCityOptions);

  renderCount();
  connect();
})();

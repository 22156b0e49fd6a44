// The parallax dashboard: fetches /api/v1/status every 2 s and renders it.
//
// Every value from the status document reaches the DOM as a text node or as the value of a
// class, data-, aria- or title attribute: nothing from a target is ever parsed as markup, and
// no URL from the document becomes a link. (The page's CSP allows no script but this one.)
//
// Stable hooks, for tests and for anyone scripting the page:
//   #version #generation #vantage[data-kind] #readiness[data-ready] #plan-loaded #reload[data-ok] #updated
//   #overview #fetch-error #reload-errors #mismatch-index
//   main#targets[data-loaded]
//     section.target#target-N[data-target][data-mismatches]
//       article.mismatch[data-mismatch=CHECKER_VIEW][data-client-view][data-checker-view]
//                       [data-direction][data-diagnosis]
//         .direction .diagnosis-code .diagnosis-text .evidence .flipped li
//       article.view[data-view][data-role][data-verdict][data-mismatched]
//         .verdict-text .outcome-result .outcome-phase .outcome-error .outcome-status
//         .outcome-location (a 3xx's Location, inside .outcome-status)
//         .outcome-latency .outcome-detail svg.sparkline
'use strict';

(function () {
  const REFRESH_MS = 2000;
  const FETCH_TIMEOUT_MS = 5000;
  const SVG_NS = 'http://www.w3.org/2000/svg';

  // docs/errors.md#diagnoses, one line each.
  const DIAGNOSES = {
    shallow_health_path: 'The health path passes while the users\u2019 route fails (or the reverse): it does not reflect what users use.',
    auth_required: 'The check is refused for lack of credentials (401, 403 or a redirect to a login page).',
    checker_protocol_mismatch: 'The checker speaks the wrong protocol: plain HTTP to a TLS listener, TLS to a plain one, a method the app refuses, or no certificate verification hiding a broken certificate.',
    checker_source_blocked: 'The checker\u2019s source address is blocked, or not allowed by allow_sources.',
    no_local_endpoints: 'kube-proxy reports no ready endpoint on this node while clients are served (or endpoints while the node\u2019s traffic fails).',
    node_port_vs_proxy: 'The node-port check passes while clients going through the proxy fail (or the reverse).',
    sni_mismatch: 'The SNI sent (or its absence) selects a different certificate or route.',
    certificate_rejected: 'The users\u2019 clients reject the certificate (expired, not yet valid, untrusted, or their name not in its SANs) while the checker, which does not verify, passes.',
    default_certificate_served: 'The server gives the users\u2019 name its default certificate, which does not cover it: the TLS Secret for the host is missing or in the wrong namespace.',
    host_route_mismatch: 'The Host header selects a different (default) backend.',
    proxy_protocol_mismatch: 'A PROXY protocol header is sent to a listener that does not expect one, or is missing where one is required.',
    status_matcher_mismatch: 'The same response is judged differently by the two views\u2019 status matchers (204, 3xx\u2026).',
    user_agent_dependent: 'The result depends on the User-Agent.',
    http_version_dependent: 'The result depends on the HTTP version (HTTP/1.0, HTTP/1.1, HTTP/2): the server refuses the checker\u2019s.',
    dns_wrong_address: 'The clients\u2019 DNS does not point at the expected load balancer.',
    unattributed: 'No single switched attribute explains the disagreement.',
    pending: 'Attribution is probing hybrids; the diagnosis follows within seconds.',
    checker_redirected: 'The check is answered with a redirect (3xx) its matcher rejects: exempt the health path from the redirect, or check the scheme and port it points to.',
    redirect_masks_outage: 'The checker passes on a redirect (3xx) while users fail behind it: check what the redirect points to, or accept 2xx only.',
    kube_proxy_endpoints_disagree: 'kube-proxy\u2019s localEndpoints on this node differs from the ready endpoints the EndpointSlices place here: kube-proxy\u2019s node name is not the Node\u2019s.',
    health_port_not_served: 'Nothing answers healthCheckNodePort on this node although the Service is externalTrafficPolicy Local: the service proxy does not serve it.',
    draining_endpoints: 'This node\u2019s endpoints are terminating: the check follows a drain (expected during a rollout), or keeps passing while the pods go away.',
    no_ready_endpoints: 'Users fail because the backend Service has no ready endpoint on any node.',
    route_not_accepted: 'Users fail because the Gateway did not accept the HTTPRoute (Accepted: False).',
    backend_ref_unresolved: 'Users fail because the HTTPRoute\u2019s backend refs are not resolved (ResolvedRefs: False).',
    gateway_not_programmed: 'Users fail at a Gateway that is not Programmed.',
    ingress_class_unclaimed: 'Users fail at an Ingress whose ingressClassName names no IngressClass.',
    vip_without_health_check: 'Users fail at a MetalLB VIP announced while its Service has no ready endpoint: no checker withdraws it.',
  };

  const DIRECTIONS = {
    blackhole: {
      label: 'Blackhole',
      meaning: 'The checker passes while clients fail: the load balancer keeps sending users to a broken backend.',
    },
    false_drain: {
      label: 'False drain',
      meaning: 'The checker fails while clients succeed: the load balancer pulls a backend that works.',
    },
  };

  const VERDICTS = {
    healthy: { icon: '\u2714', label: 'healthy' },
    unhealthy: { icon: '\u2716', label: 'unhealthy' },
    unknown: { icon: '?', label: 'unknown' },
  };

  // <details> the reader opened stay open across refreshes.
  const openDetails = new Set();
  let lastSuccess = null;

  // ---- DOM building: text only -------------------------------------------------------------

  function append(node, children) {
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      if (Array.isArray(child)) append(node, child);
      else if (typeof child === 'string' || typeof child === 'number') node.appendChild(document.createTextNode(String(child)));
      else node.appendChild(child);
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const key of Object.keys(attrs || {})) {
      const value = attrs[key];
      if (value === null || value === undefined || value === false) continue;
      node.setAttribute(key, value === true ? '' : String(value));
    }
    return node;
  }

  function el(tag, attrs, ...children) {
    return append(setAttrs(document.createElement(tag), attrs), children);
  }

  function svg(tag, attrs, ...children) {
    return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
  }

  function byId(id) {
    return document.getElementById(id);
  }

  function setText(id, text) {
    const node = byId(id);
    if (node.textContent !== text) node.textContent = text;
    return node;
  }

  // ---- formatting ----------------------------------------------------------------------------

  function isNum(x) {
    return typeof x === 'number' && isFinite(x);
  }

  // Durations as people write them, the rules of src/duration.rs (`0.4ms`, `250ms`, `4.9s`,
  // `1m30s`): the terminal, the logs and this page print a duration the same way.
  function trimmed(x, places) {
    const text = x.toFixed(places);
    return text.indexOf('.') < 0 ? text : text.replace(/0+$/, '').replace(/\.$/, '');
  }

  function roundTo(x, places) {
    const scale = Math.pow(10, places);
    return Math.round(x * scale) / scale;
  }

  function fmtMs(ms) {
    if (!isNum(ms) || ms < 0) return '\u2014';
    if (ms === 0) return '0s';
    if (roundTo(ms, 1) < 10) return trimmed(ms, 1) + 'ms';
    if (Math.round(ms) < 1000) return Math.round(ms) + 'ms';
    const s = ms / 1000;
    if (roundTo(s, 2) < 10) return trimmed(s, 2) + 's';
    if (roundTo(s, 1) < 60) return trimmed(s, 1) + 's';
    const total = Math.max(60, Math.round(s));
    const parts = [[Math.floor(total / 86400), 'd'], [Math.floor((total % 86400) / 3600), 'h'],
      [Math.floor((total % 3600) / 60), 'm'], [total % 60, 's']];
    return parts.filter((p) => p[0] > 0).map((p) => p[0] + p[1]).join('');
  }

  function fmtDuration(seconds) {
    if (!isNum(seconds) || seconds < 0) seconds = 0;
    return fmtMs(Math.floor(seconds) * 1000);
  }

  function fmtInterval(ms) {
    return fmtMs(ms);
  }

  function ago(iso) {
    const t = Date.parse(iso);
    if (!isNum(t)) return String(iso);
    const s = (Date.now() - t) / 1000;
    return s < 1 ? 'just now' : fmtDuration(s) + ' ago';
  }

  function timeEl(iso, text) {
    if (!iso) return el('span', { class: 'none' }, '\u2014');
    return el('time', { datetime: iso, title: iso }, text === undefined ? ago(iso) : text);
  }

  function plural(n, one, many) {
    return n + ' ' + (n === 1 ? one : many);
  }

  function dash(x) {
    return x === null || x === undefined || x === '' ? '\u2014' : String(x);
  }

  function details(key, summary, ...children) {
    const node = el('details', { 'data-key': key, open: openDetails.has(key) }, el('summary', null, summary), ...children);
    node.addEventListener('toggle', () => {
      if (node.open) openDetails.add(key);
      else openDetails.delete(key);
    });
    return node;
  }

  // ---- header --------------------------------------------------------------------------------

  function renderHeader(doc) {
    setText('version', dash(doc.version));
    setText('generation', dash(doc.generation));
    const v = doc.vantage;
    const where = v ? [v.kind, v.zone, v.region].filter(Boolean).join(', ') : '';
    const vantage = setText('vantage', v ? v.name + ' (' + where + ')' : '—');
    vantage.setAttribute('data-kind', v ? v.kind : '');
    const ready = setText('readiness', doc.ready ? '\u2714 Ready' : '\u2716 Not ready');
    ready.setAttribute('data-ready', doc.ready ? 'true' : 'false');

    const loaded = byId('plan-loaded');
    loaded.replaceChildren(timeEl(doc.plan_loaded_at));

    const reload = byId('reload');
    const errorsBox = byId('reload-errors');
    const r = doc.last_reload;
    if (!r) {
      reload.replaceChildren('none since start');
      reload.removeAttribute('data-ok');
      errorsBox.hidden = true;
    } else {
      reload.setAttribute('data-ok', r.ok ? 'true' : 'false');
      const errors = Array.isArray(r.errors) ? r.errors : [];
      reload.replaceChildren(
        r.ok ? '\u2714 applied ' : '\u2716 failed ',
        timeEl(r.at),
        r.ok ? null : ' (' + plural(errors.length, 'error', 'errors') + ')'
      );
      errorsBox.hidden = r.ok;
      errorsBox.querySelector('ul').replaceChildren(...errors.map((e) => el('li', null, el('code', null, e))));
    }
  }

  // Kubernetes discovery: one fact (state, targets derived) and, when something is wrong or was
  // skipped, one line per failing kind, rejected target and note.
  function renderDiscovery(doc) {
    const d = doc.discovery;
    const fact = byId('discovery-fact');
    const box = byId('discovery-detail');
    if (!d) {
      fact.hidden = true;
      box.hidden = true;
      return;
    }
    fact.hidden = false;
    const state = byId('discovery');
    let ok = d.healthy && d.synced && !d.client_error;
    if (d.client_error) state.replaceChildren('\u2716 no client');
    else if (!d.synced) state.replaceChildren('\u2026 listing the cluster');
    else if (!d.healthy) state.replaceChildren('\u2716 failing since ', timeEl(d.failing_since), ' (last good objects kept)');
    else state.replaceChildren('\u2714 ' + d.mode + ' mode, ' + plural(d.targets, 'target', 'targets'));
    state.setAttribute('data-ok', ok ? 'true' : 'false');
    const lines = [];
    if (d.client_error) lines.push(el('li', null, el('code', null, d.client_error)));
    (d.resources || []).filter((r) => r.failing).forEach((r) => {
      lines.push(el('li', null, r.resource + ': failing (' + r.errors + ' errors) ', el('code', null, r.last_error || '')));
    });
    (d.rejected || []).forEach((e) => lines.push(el('li', null, 'rejected: ', el('code', null, e))));
    (d.notes || []).forEach((n) => lines.push(el('li', null, 'skipped: ', n)));
    box.hidden = lines.length === 0;
    box.querySelector('ul').replaceChildren(...lines);
  }

  // The plan's conditions: findings about the cluster that need no probe.
  function renderConditions(doc) {
    const box = byId('conditions');
    const conditions = doc.conditions || [];
    box.hidden = conditions.length === 0;
    box.querySelector('ul').replaceChildren(...conditions.map((c) =>
      el('li', { 'data-condition': c.kind },
        el('code', null, c.kind), ' ', c.object,
        c.reason ? ' (' + c.reason + ')' : '',
        c.target ? ' \u2014 target ' + c.target : '',
        ': ', c.message)));
  }

  function renderOverview(doc) {
    const targets = doc.targets || [];
    let views = 0, open = 0, unhealthy = 0;
    const index = [];
    targets.forEach((t, i) => {
      views += (t.views || []).length;
      unhealthy += (t.views || []).filter((v) => v.verdict && v.verdict.state === 'unhealthy').length;
      (t.mismatches || []).forEach((m) => {
        open += 1;
        index.push(
          el('li', null,
            el('a', { href: '#target-' + i }, t.name),
            ': ', m.client_view, ' vs ', m.checker_view, ' \u2014 ',
            (DIRECTIONS[m.direction] || { label: m.direction }).label, ', ',
            el('code', null, m.diagnosis))
        );
      });
    });
    setText('overview',
      plural(targets.length, 'target', 'targets') + ', ' + plural(views, 'view', 'views') + ', ' +
      plural(unhealthy, 'unhealthy view', 'unhealthy views') + ', ' +
      plural(open, 'open mismatch', 'open mismatches') + '.');
    const nav = byId('mismatch-index');
    nav.hidden = open === 0;
    nav.querySelector('ul').replaceChildren(...index);
    document.title = open > 0 ? 'parallax \u2014 ' + plural(open, 'mismatch', 'mismatches') : 'parallax';
  }

  // ---- targets -------------------------------------------------------------------------------

  function renderTargets(doc) {
    const main = byId('targets');
    const targets = doc.targets || [];
    if (targets.length === 0) {
      main.replaceChildren(el('p', { class: 'placeholder' }, 'No targets in the running plan.'));
    } else {
      main.replaceChildren(...targets.map(targetBlock));
    }
    main.setAttribute('aria-busy', 'false');
    main.setAttribute('data-loaded', 'true');
  }

  function targetBlock(t, i) {
    const id = 'target-' + i;
    const mismatches = t.mismatches || [];
    const section = el('section', {
      class: 'target' + (mismatches.length ? ' has-mismatch' : ''),
      id: id,
      'data-target': t.name,
      'data-mismatches': mismatches.length,
      'aria-labelledby': id + '-name',
    });
    append(section, [
      el('header', { class: 'target-head' },
        el('h2', { class: 'target-name', id: id + '-name' }, t.name),
        el('p', { class: 'target-summary' },
          mismatches.length
            ? '\u26a0 ' + plural(mismatches.length, 'open mismatch', 'open mismatches')
            : '\u2714 no open mismatch')),
      mismatches.length
        ? el('div', { class: 'mismatches' }, ...mismatches.map((m, j) => mismatchBlock(t, m, id + '-m' + j)))
        : null,
      t.explained
        ? el('p', { class: 'explained', 'data-diagnosis': t.explained.diagnosis },
          '\u2716 ' + t.explained.view + ' fails, and the cluster says why: ',
          el('code', null, t.explained.diagnosis), ' \u2014 ', t.explained.evidence)
        : null,
      el('div', { class: 'views' }, ...(t.views || []).map((v) => viewBlock(t, v, mismatches))),
    ]);
    return section;
  }

  function mismatchBlock(t, m, key) {
    const dir = DIRECTIONS[m.direction] || { label: dash(m.direction), meaning: '' };
    const flipped = Array.isArray(m.flipped) ? m.flipped : [];
    const facts = el('dl', { class: 'mismatch-facts' },
      el('dt', null, 'Diagnosis'),
      el('dd', { class: 'diagnosis' },
        el('code', { class: 'diagnosis-code' }, dash(m.diagnosis)),
        el('span', { class: 'diagnosis-text' }, DIAGNOSES[m.diagnosis] || '')),
      el('dt', null, 'Evidence'),
      el('dd', { class: 'evidence' }, dash(m.evidence)),
      el('dt', null, 'Flipped'),
      el('dd', { class: 'flipped' },
        flipped.length
          ? el('ul', null, ...flipped.map((a) => el('li', null, el('code', null, a))))
          : (m.attribution ? 'no single switched attribute flipped a result' : 'not attributed (no hybrid probes)')),
      el('dt', null, 'Errors'),
      el('dd', { class: 'errors' },
        m.client_view + ': ', el('code', null, dash(m.client_error)), ' \u00b7 ',
        m.checker_view + ': ', el('code', null, dash(m.checker_error))),
      (m.client_address || m.checker_address) ? el('dt', null, 'Dialed') : null,
      (m.client_address || m.checker_address)
        ? el('dd', { class: 'addresses' },
          m.client_view + ': ', el('code', null, dash(m.client_address)), ' \u00b7 ',
          m.checker_view + ': ', el('code', null, dash(m.checker_address)))
        : null,
      el('dt', null, 'Open for'),
      el('dd', { class: 'open-for' },
        fmtDuration(m.open_for_s), ' (disagreeing since ', timeEl(m.since), ')'),
      el('dt', null, 'Found by'),
      el('dd', { class: 'basis' },
        m.basis === 'audit' ? 'the allow_sources audit (no traffic needed)' : 'probes'));
    return el('article', {
      class: 'mismatch',
      'data-mismatch': m.checker_view,
      'data-client-view': m.client_view,
      'data-checker-view': m.checker_view,
      'data-direction': m.direction,
      'data-diagnosis': m.diagnosis,
    },
    el('h3', { class: 'mismatch-title' },
      el('span', { class: 'direction', 'data-direction': m.direction },
        el('span', { 'aria-hidden': 'true' }, '\u26a0 '), dir.label),
      ' ',
      el('span', { class: 'pair' }, m.client_view, ' vs ', m.checker_view)),
    el('p', { class: 'direction-meaning' }, dir.meaning),
    facts,
    m.attribution ? attributionBlock(m.attribution, key) : null);
  }

  function attributionBlock(a, key) {
    const hybrids = Array.isArray(a.hybrids) ? a.hybrids : [];
    const differences = Array.isArray(a.differences) ? a.differences : [];
    const rows = hybrids.map((h) =>
      el('tr', { class: h.flipped ? 'flipped-row' : null },
        el('td', null, el('code', null, h.view)),
        el('td', null, el('code', null, h.attribute)),
        el('td', null, h.switched === 'client' ? 'client request, one checker value' : 'checker request, one client value'),
        el('td', null, h.ok ? 'ok' : dash(h.error), h.status ? ' (' + h.status + ')' : ''),
        el('td', null, h.flipped ? '\u2714 flipped' : 'same')));
    return details(key + '-attribution',
      'Attribution: ' + plural(hybrids.length, 'hybrid probe', 'hybrid probes') +
        (differences.length ? ' over ' + differences.join(', ') : '') +
        (a.not_tried ? ' (' + a.not_tried + ' not tried)' : ''),
      el('div', { class: 'table-wrap' },
        el('table', null,
          el('thead', null, el('tr', null,
            el('th', { scope: 'col' }, 'Hybrid'),
            el('th', { scope: 'col' }, 'Switched'),
            el('th', { scope: 'col' }, 'Started from'),
            el('th', { scope: 'col' }, 'Result'),
            el('th', { scope: 'col' }, 'Flipped'))),
          el('tbody', null, ...rows))));
  }

  function viewBlock(t, v, mismatches) {
    const verdict = v.verdict || {};
    const state = VERDICTS[verdict.state] ? verdict.state : 'unknown';
    const mine = mismatches.filter((m) => m.checker_view === v.name || (v.role === 'client' && m.client_view === v.name));
    const o = v.last_outcome;
    return el('article', {
      class: 'view role-' + v.role,
      'data-view': v.name,
      'data-role': v.role,
      'data-verdict': state,
      'data-mismatched': mine.length ? 'true' : 'false',
    },
    el('header', { class: 'view-head' },
      el('h3', { class: 'view-name' }, v.name),
      el('span', { class: 'tag role' }, v.role),
      v.profile ? el('span', { class: 'tag profile' }, v.profile) : null,
      mine.length && v.role === 'checker'
        ? el('span', { class: 'tag disagrees' }, 'disagrees with ' + mine[0].client_view)
        : null),
    el('p', { class: 'verdict', 'data-state': state },
      el('span', { class: 'verdict-icon', 'aria-hidden': 'true' }, VERDICTS[state].icon),
      ' ',
      el('span', { class: 'verdict-text' }, VERDICTS[state].label),
      verdict.since ? el('span', { class: 'verdict-since' }, ' since ', timeEl(verdict.since)) : null),
    el('p', { class: 'url' }, el('code', null, dash(v.url))),
    outcomeBlock(o),
    trendBlock(v),
    el('p', { class: 'counts' },
      plural(v.probes || 0, 'probe', 'probes'), ', ', dash(v.failures), ' failed, ', dash(v.skipped), ' skipped',
      ' \u00b7 every ', fmtInterval(v.interval_ms),
      ' \u00b7 rise ', dash(verdict.rise), ' / fall ', dash(verdict.fall),
      ' (', dash(verdict.consecutive_ok), ' ok, ', dash(verdict.consecutive_fail), ' failed in a row)'));
  }

  function outcomeBlock(o) {
    if (!o) return el('p', { class: 'outcome-none' }, 'No probe has finished yet.');
    const request = o.request || {};
    const timings = o.timings_ms || {};
    const status = o.status !== null && o.status !== undefined ? String(o.status) : (o.grpc_status || null);
    const rows = [
      ['Result', 'outcome-result', o.ok ? '\u2714 ok' : '\u2716 failed'],
      ['Phase', 'outcome-phase', dash(o.phase)],
      ['Error', 'outcome-error', dash(o.error)],
      // A redirect's Location next to its status (a text node, never a link).
      ['Status', 'outcome-status', [dash(status),
        o.location ? [' \u2192 ', el('code', { class: 'outcome-location' }, o.location)] : null]],
      ['Latency', 'outcome-latency', fmtMs(timings.total)],
    ];
    const sent = [
      request.method || request.path ? [dash(request.method), ' ', dash(request.path)] : null,
      ' \u2192 ', el('code', null, dash(o.peer || request.address)),
      ' \u00b7 Host ', el('code', null, dash(request.host)),
      request.scheme === 'https' || request.scheme === 'tls' || request.scheme === 'grpcs'
        ? [' \u00b7 SNI ', el('code', null, dash(request.sni))] : null,
      request.source ? [' \u00b7 from ', el('code', null, request.source)] : null,
      request.proxy_protocol ? [' \u00b7 PROXY ', request.proxy_protocol] : null,
    ];
    const tls = o.tls
      ? el('p', { class: 'outcome-tls' },
        dash(o.tls.version), ' \u00b7 ', dash(o.tls.cert_subject),
        o.tls.not_after ? [' \u00b7 expires ', timeEl(o.tls.not_after, o.tls.not_after.slice(0, 10))] : null)
      : null;
    return el('div', { class: 'outcome', 'data-ok': o.ok ? 'true' : 'false' },
      el('dl', { class: 'outcome-facts' },
        ...rows.map(([label, cls, value]) => el('div', null, el('dt', null, label), el('dd', { class: cls }, value)))),
      o.detail ? el('p', { class: 'outcome-detail' }, o.detail) : null,
      el('p', { class: 'outcome-request' }, ...sent),
      tls);
  }

  function trendBlock(v) {
    const recent = Array.isArray(v.recent) ? v.recent : [];
    if (recent.length === 0) return el('p', { class: 'trend-empty' }, 'No latency trend yet.');
    const W = 200, H = 36, PAD = 4;
    const values = recent.map((r) => (isNum(r.total_ms) ? r.total_ms : 0));
    const min = Math.min(...values), max = Math.max(...values);
    const failed = recent.filter((r) => !r.ok).length;
    const step = (W - 2 * PAD) / (Math.max(recent.length, 2) - 1);
    const x = (i) => W - PAD - (recent.length - 1 - i) * step;
    const y = (value) => (max === min ? H / 2 : H - PAD - ((value - min) / (max - min)) * (H - 2 * PAD));
    const points = values.map((value, i) => x(i).toFixed(1) + ',' + y(value).toFixed(1)).join(' ');
    const label = 'Latency of the last ' + plural(recent.length, 'probe', 'probes') + ': ' +
      fmtMs(min) + ' to ' + fmtMs(max) + ', ' + failed + ' failed.';
    const marks = [];
    recent.forEach((r, i) => {
      if (!r.ok) {
        marks.push(svg('circle', { class: 'fail', cx: x(i).toFixed(1), cy: y(values[i]).toFixed(1), r: 2.5 },
          svg('title', null, (r.error || 'failed') + ' at ' + r.at)));
      }
    });
    const last = recent.length - 1;
    return el('figure', { class: 'trend' },
      svg('svg', {
        class: 'sparkline', viewBox: '0 0 ' + W + ' ' + H, width: W, height: H,
        role: 'img', 'aria-label': label,
      },
      svg('title', null, label),
      svg('polyline', { class: 'line', points: points }),
      ...marks,
      svg('circle', { class: 'last', cx: x(last).toFixed(1), cy: y(values[last]).toFixed(1), r: 2 })),
      el('figcaption', null, fmtMs(min), ' \u2013 ', fmtMs(max), ' \u00b7 ', failed + ' of ' + recent.length + ' failed'));
  }

  // ---- the loop ------------------------------------------------------------------------------

  // Redrawing replaces the targets' DOM, which would drop a selection every 2 s: while the
  // reader has text selected in them (to copy evidence, say), only the header is refreshed.
  function selectingInTargets() {
    const selection = window.getSelection();
    return Boolean(selection && !selection.isCollapsed && selection.anchorNode &&
      byId('targets').contains(selection.anchorNode));
  }

  function render(doc) {
    renderHeader(doc);
    renderDiscovery(doc);
    renderConditions(doc);
    renderOverview(doc);
    if (!selectingInTargets()) renderTargets(doc);
  }

  function showError(message) {
    const box = byId('fetch-error');
    box.hidden = false;
    box.textContent = message +
      (lastSuccess ? '; showing the status of ' + lastSuccess.toLocaleTimeString() : '') +
      '. Retrying every ' + REFRESH_MS / 1000 + ' s.';
    document.body.setAttribute('data-stale', 'true');
  }

  function reason(e) {
    return e && e.name === 'AbortError' ? 'timed out' : String((e && e.message) || e);
  }

  async function refresh() {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), FETCH_TIMEOUT_MS);
    let doc = null;
    try {
      const response = await fetch('/api/v1/status', {
        cache: 'no-store', credentials: 'same-origin', signal: abort.signal,
        headers: { accept: 'application/json' },
      });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      doc = await response.json();
    } catch (e) {
      showError('Cannot reach parallax (' + reason(e) + ')');
    } finally {
      clearTimeout(timer);
    }
    if (doc !== null) {
      try {
        render(doc);
        lastSuccess = new Date();
        setText('updated', lastSuccess.toLocaleTimeString());
        byId('fetch-error').hidden = true;
        document.body.removeAttribute('data-stale');
      } catch (e) {
        showError('Cannot show the status document (' + reason(e) + ')');
      }
    }
    // Chained, not setInterval: a slow answer never stacks requests.
    setTimeout(refresh, REFRESH_MS);
  }

  refresh();
})();

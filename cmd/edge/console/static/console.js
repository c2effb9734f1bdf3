// The console's live updates: every 2 s the page polls /api/status,
// /api/history and (on the L3 page) /api/l3, and updates its tables, counts
// and charts in place, with no reload. The pages are rendered by the server
// (html/template) and work without this script; it only keeps them fresh.
// Nothing here is inline (the Content-Security-Policy allows scripts from
// /static/ only) and no style attribute is written in markup: classes and
// the hidden attribute only. uPlot sets its elements' sizes from script
// (CSSOM), which the policy allows.
(function () {
	'use strict';

	var POLL_MS = 2000;
	var CHART_HEIGHT = 180;
	var WINDOW_S = 15 * 60; // the history's window (edgeapi.Window)
	var page = document.body.dataset.page;
	var charts = []; // {el, keys, unit, plot, updates}

	// ---- formatting, as the server's templates do (views.go) ----

	function trimFloat(f) {
		if (f === Math.trunc(f) || Math.abs(f) >= 100) {
			return String(Math.round(f));
		}
		return f.toFixed(1);
	}

	function scaled(f, unit) {
		var units = 'KMGTPE';
		if (Math.abs(f) < 1024) {
			return trimFloat(f) + ' ' + unit;
		}
		var i = -1;
		while (Math.abs(f) >= 1024 && i < units.length - 1) {
			f /= 1024;
			i++;
		}
		return trimFloat(f) + ' ' + units[i] + 'i' + unit;
	}

	function fmtBytes(n) {
		return scaled(Number(n) || 0, 'B');
	}

	function fmtRate(v, unit) {
		v = Number(v) || 0;
		if (unit === '1/s') {
			return trimFloat(v) + '/s';
		}
		return scaled(v, 'B') + '/s';
	}

	function fmtTotal(v, unit) {
		return unit === 'B/s' ? fmtBytes(v) : trimFloat(Number(v) || 0);
	}

	function roughly(ms) {
		var s = Math.floor(ms / 1000);
		if (s < 60) return s + 's';
		if (s < 3600) return Math.floor(s / 60) + 'm';
		if (s < 48 * 3600) return Math.floor(s / 3600) + 'h';
		return Math.floor(s / 86400) + 'd';
	}

	// Go's zero time, as time.Time marshals it.
	function isZeroTime(t) {
		return !t || t.indexOf('0001-01-01') === 0;
	}

	function ago(nowMs, t) {
		if (isZeroTime(t)) return 'never';
		var d = nowMs - Date.parse(t);
		if (d < 1000) return 'just now';
		return roughly(d) + ' ago';
	}

	function recent(nowMs, t) {
		return !isZeroTime(t) && nowMs - Date.parse(t) < 3 * 60 * 1000;
	}

	function plural(n, word) {
		return n === 1 ? '1 ' + word : n + ' ' + word + 's';
	}

	// ---- DOM helpers ----

	function q(sel, root) {
		return (root || document).querySelector(sel);
	}

	function qa(sel, root) {
		return Array.prototype.slice.call((root || document).querySelectorAll(sel));
	}

	function attrSel(name, value) {
		return '[' + name + '="' + CSS.escape(value) + '"]';
	}

	function setText(el, text) {
		if (el && el.textContent !== text) el.textContent = text;
	}

	function field(row, name) {
		return q('[data-field="' + name + '"]', row);
	}

	function cell(tr, text, cls, fieldName) {
		var td = document.createElement('td');
		td.textContent = text;
		if (cls) td.className = cls;
		if (fieldName) td.dataset.field = fieldName;
		tr.appendChild(td);
		return td;
	}

	// A notice at the top of the page: live updates stopped, or the page
	// is out of date (a row came or went that only a reload shows).
	var notices = {};

	function notice(kind, text, link) {
		notices[kind] = text ? { text: text, link: link } : null;
		var el = q('#stale');
		if (!el) return;
		var shown = null;
		Object.keys(notices).forEach(function (k) {
			if (notices[k] && !shown) shown = notices[k];
		});
		el.textContent = '';
		if (!shown) {
			el.hidden = true;
			return;
		}
		el.appendChild(document.createTextNode(shown.text + ' '));
		if (shown.link) {
			var a = document.createElement('a');
			a.href = shown.link.href;
			a.textContent = shown.link.text;
			el.appendChild(a);
		}
		el.hidden = false;
	}

	// ---- fetching ----

	function SessionEnded() {}

	function getJSON(path) {
		return fetch(path, { credentials: 'same-origin', headers: { Accept: 'application/json' }, cache: 'no-store' })
			.then(function (r) {
				var ct = r.headers.get('Content-Type') || '';
				if (r.status === 401 || r.status === 403 || (r.ok && ct.indexOf('application/json') !== 0)) {
					// The session ended: the answer is the login page.
					throw new SessionEnded();
				}
				return r.json().then(function (body) {
					if (!r.ok) throw new Error(path + ': ' + ((body && body.error) || r.status));
					return body;
				}, function () {
					throw new Error(path + ': ' + r.status);
				});
			});
	}

	// ---- the overview's counts ----

	function updateCounts(st) {
		var conns = st.edge.connections || 0;
		setText(q('[data-stat="tunnels"]'), String((st.tunnels || []).length));
		setText(q('[data-stat="connections"]'), plural(conns, 'connector connection'));
		if (st.l3 && st.l3.enabled) {
			setText(q('[data-stat="l3-clients"]'), plural(st.l3.clients || 0, 'client'));
			setText(q('[data-stat="l3-recent"]'), String(st.l3.clients_recent || 0));
		}
	}

	// ---- the tunnels page ----

	// selfName is the edge the connections are on, as views.go's.
	function selfName(st) {
		var name = '';
		(st.edges || []).forEach(function (m) {
			if (m.self) name = m.name;
		});
		return name || (st.edge.advertise || [])[0] || 'this edge';
	}

	function fillConn(tr, c, nowMs, self) {
		tr.className = 'conn' + (c.quiet ? ' quiet' : '') + (c.draining ? ' draining' : '');
		if (tr.cells.length === 0) {
			var td = document.createElement('td');
			var code = document.createElement('code');
			code.title = c.connector;
			code.textContent = c.connector.slice(0, 12);
			td.appendChild(code);
			tr.appendChild(td);
			cell(tr, self);
			cell(tr, c.protocol);
			cell(tr, c.remote);
			cell(tr, '', null, 'since');
			cell(tr, '', 'num', 'streams');
			cell(tr, '', 'num', 'rate');
		}
		setText(field(tr, 'since'), ago(nowMs, c.since));
		setText(field(tr, 'streams'), String(c.streams || 0));
		var rate = field(tr, 'rate');
		setText(rate, fmtRate(c.rate, 'B/s'));
		rate.title = fmtBytes(c.bytes_to_origin) + ' to the origin, ' + fmtBytes(c.bytes_to_user) + ' to the user since it came up';
	}

	function updateTunnels(st) {
		var table = q('#tunnels');
		if (!table) return;
		var nowMs = Date.parse(st.edge.now) || Date.now();
		var self = selfName(st);
		var seen = {};
		var changed = false;
		(st.tunnels || []).forEach(function (t) {
			seen[t.name] = true;
			var body = q('tbody' + attrSel('data-tunnel', t.name), table);
			if (!body) {
				changed = true;
				return;
			}
			var conns = t.connections || [];
			var live = {};
			var noconn = q('tr.noconn', body);
			// A connection is its connector's and its remote address's: a
			// connector keeps several connections to an edge.
			conns.forEach(function (c) {
				live[c.connector + ' ' + c.remote] = true;
				var tr = q('tr.conn' + attrSel('data-connector', c.connector) + attrSel('data-remote', c.remote), body);
				if (!tr) {
					tr = document.createElement('tr');
					tr.dataset.tunnel = t.name;
					tr.dataset.connector = c.connector;
					tr.dataset.remote = c.remote;
					body.insertBefore(tr, noconn);
				}
				fillConn(tr, c, nowMs, self);
			});
			qa('tr.conn', body).forEach(function (tr) {
				if (!live[tr.dataset.connector + ' ' + tr.dataset.remote]) tr.remove();
			});
			if (noconn) noconn.hidden = conns.length > 0;
			setText(field(body, 'count'), plural(conns.length, 'connection'));
		});
		qa('tbody[data-tunnel]', table).forEach(function (body) {
			if (!seen[body.dataset.tunnel]) {
				body.classList.add('gone');
				changed = true;
			}
		});
		notice('tunnels', changed ? 'Tunnels were created or deleted since this page was loaded.' : '',
			{ href: '/tunnels', text: 'Reload' });
	}

	// ---- the L3 page ----

	function updatePeers(tableSel, attr, peers, nowMs) {
		var table = q(tableSel);
		if (!table) return false;
		var changed = false;
		var seen = {};
		peers.forEach(function (p) {
			seen[p.name] = true;
			var tr = q('tr' + attrSel(attr, p.name), table);
			if (!tr) {
				changed = true;
				return;
			}
			var hs = field(tr, 'handshake');
			setText(hs, ago(nowMs, p.last_handshake));
			if (hs) hs.className = recent(nowMs, p.last_handshake) ? 'ok' : 'idle';
			setText(field(tr, 'rx'), fmtBytes(p.rx_bytes));
			setText(field(tr, 'tx'), fmtBytes(p.tx_bytes));
			setText(field(tr, 'drops'), String(p.drops || 0));
		});
		qa('tbody tr[' + attr + ']', table).forEach(function (tr) {
			if (!seen[tr.getAttribute(attr)]) {
				tr.classList.add('gone');
				changed = true;
			}
		});
		return changed;
	}

	function updateL3(l3, st) {
		var nowMs = (st && Date.parse(st.edge.now)) || Date.now();
		var changed = updatePeers('#l3-clients', 'data-client', l3.clients || [], nowMs);
		changed = updatePeers('#l3-connectors', 'data-connector', l3.connectors || [], nowMs) || changed;
		var subnets = q('#l3-subnets');
		if (st && subnets) {
			var n = 0;
			(st.l3.subnets || []).forEach(function (s) {
				n++;
				var tr = q('tr' + attrSel('data-prefix', s.prefix), subnets);
				if (!tr) {
					changed = true;
					return;
				}
				setText(field(tr, 'active'), s.active || 'none');
				setText(field(tr, 'standby'), (s.standby || []).join(', '));
			});
			if (n !== qa('tbody tr[data-prefix]', subnets).length) changed = true;
		}
		notice('l3', changed ? 'Clients, connectors or subnets changed since this page was loaded.' : '',
			{ href: '/l3', text: 'Reload' });
	}

	// ---- limits and drops (the overview) ----

	function updateCounters(h) {
		var groups = { limits: [], drops: [] };
		(h.series || []).forEach(function (s) {
			if (s.key.indexOf('limit/') === 0) groups.limits.push(s);
			else if (s.key.indexOf('drop/') === 0 || s.key.indexOf('xdp/') === 0) groups.drops.push(s);
		});
		Object.keys(groups).forEach(function (id) {
			var table = q('#' + id);
			if (!table) return;
			var body = table.tBodies[0];
			groups[id].forEach(function (s) {
				var tr = q('tr' + attrSel('data-key', s.key), body);
				var pts = s.points || [];
				if (!tr && !s.total && !pts[pts.length - 1]) return; // nothing counted yet
				if (!tr) {
					tr = document.createElement('tr');
					tr.dataset.key = s.key;
					var td = document.createElement('td');
					var code = document.createElement('code');
					code.textContent = s.key;
					td.appendChild(code);
					tr.appendChild(td);
					cell(tr, '', 'num', 'total');
					cell(tr, '', 'num', 'rate');
					body.appendChild(tr);
				}
				setText(field(tr, 'total'), fmtTotal(s.total, s.unit));
				setText(field(tr, 'rate'), fmtRate(pts.length ? pts[pts.length - 1] : 0, s.unit));
			});
			var empty = q('[data-empty="' + id + '"]');
			if (empty) empty.hidden = body.rows.length > 0;
		});
	}

	// ---- charts ----

	var COLORS = ['#2563eb', '#db2777', '#059669', '#d97706'];

	function seriesLabel(key) {
		var last = key.slice(key.lastIndexOf('/') + 1);
		return { to_origin: 'to origin', to_user: 'to user', rx: 'received', tx: 'sent' }[last] || last;
	}

	function axisValue(v, unit) {
		return unit === '1/s' ? trimFloat(v) + '/s' : scaled(v, 'B').replace(' ', '\u202f') + '/s';
	}

	function makeChart(el) {
		var keys = (el.dataset.series || '').split(',').filter(Boolean);
		var unit = el.dataset.unit || 'B/s';
		var series = [{}];
		keys.forEach(function (k, i) {
			series.push({
				label: seriesLabel(k),
				stroke: COLORS[i % COLORS.length],
				width: 1.5,
				value: function (u, v) {
					return v == null ? '–' : fmtRate(v, unit);
				},
			});
		});
		var c = {
			el: el, keys: keys, unit: unit, plot: null, updates: 0, xrange: null,
			opts: {
				width: chartWidth(el),
				height: CHART_HEIGHT,
				series: series,
				scales: {
					// The whole window, the newest step at the right: a
					// young edge's short history starts part way.
					x: {
						time: true,
						range: function (u, min, max) {
							return c.xrange || [min, max];
						},
					},
					y: {
						range: function (u, min, max) {
							return [0, max > 0 ? max * 1.1 : 1];
						},
					},
				},
				axes: [{}, {
					size: 80,
					values: function (u, splits) {
						return splits.map(function (v) {
							return axisValue(v, unit);
						});
					},
				}],
				cursor: { drag: { x: false, y: false } },
			},
		};
		return c;
	}

	function chartWidth(el) {
		return Math.max(200, el.clientWidth || 0);
	}

	// chartData is the history's points for the chart's keys on a shared
	// time axis (seconds), oldest first. A series shorter than the longest
	// (a newer tunnel) has no points before it began; a series the history
	// does not hold (nothing counted yet) is zero.
	function chartData(c, h) {
		var byKey = {};
		(h.series || []).forEach(function (s) {
			byKey[s.key] = s.points || [];
		});
		var n = 0;
		c.keys.forEach(function (k) {
			if (byKey[k] && byKey[k].length > n) n = byKey[k].length;
		});
		(h.series || []).forEach(function (s) {
			if ((s.points || []).length > n) n = s.points.length;
		});
		var step = (h.step || 0) / 1e9 || 1;
		var now = (Date.parse(h.now) || Date.now()) / 1000;
		var x = [];
		for (var i = 0; i < n; i++) x.push(now - (n - 1 - i) * step);
		var data = [x];
		var peak = 0;
		c.keys.forEach(function (k) {
			var pts = byKey[k];
			var ys = [];
			for (var i = 0; i < n; i++) {
				var v;
				if (!pts) v = 0;
				else {
					var j = i - (n - pts.length);
					v = j >= 0 ? pts[j] : null;
				}
				if (v != null && v > peak) peak = v;
				ys.push(v);
			}
			data.push(ys);
		});
		return { data: data, peak: peak, xrange: [now - WINDOW_S + step, now] };
	}

	function updateCharts(h) {
		charts.forEach(function (c) {
			var d = chartData(c, h);
			c.xrange = d.xrange;
			if (!c.plot) {
				if (typeof uPlot !== 'function') return;
				c.plot = new uPlot(c.opts, d.data, c.el);
			} else {
				c.plot.setData(d.data);
			}
			c.updates++;
			c.el.dataset.peak = String(d.peak);
			c.el.dataset.updates = String(c.updates);
		});
	}

	function resizeChart(c) {
		var w = chartWidth(c.el);
		if (c.plot && c.plot.width !== w) c.plot.setSize({ width: w, height: CHART_HEIGHT });
		c.opts.width = w;
	}

	// watchSizes keeps each chart as wide as its box: the box's width
	// comes from the page (a window resized or turned, a scroll bar come),
	// never from the chart inside it.
	function watchSizes() {
		if (typeof ResizeObserver === 'function') {
			var ro = new ResizeObserver(function () {
				charts.forEach(resizeChart);
			});
			charts.forEach(function (c) {
				ro.observe(c.el);
			});
			return;
		}
		var timer = null;
		window.addEventListener('resize', function () {
			clearTimeout(timer);
			timer = setTimeout(function () {
				charts.forEach(resizeChart);
			}, 100);
		});
	}

	// ---- the loop ----

	// historyPath asks for the series the page shows: its charts' (all
	// tunnels' as one prefix) and the limits and drops when it lists them.
	function historyPath() {
		var keys = {};
		charts.forEach(function (c) {
			c.keys.forEach(function (k) {
				keys[k.indexOf('tunnel/') === 0 ? 'tunnel/' : k] = true;
			});
		});
		if (q('#limits')) keys['limit/'] = true;
		if (q('#drops')) {
			keys['drop/'] = true;
			keys['xdp/'] = true;
		}
		return '/api/history?' + Object.keys(keys).sort().map(function (k) {
			return 'key=' + encodeURIComponent(k);
		}).join('&');
	}

	function tick() {
		var wantStatus = page === 'overview' || page === 'tunnels' || page === 'l3';
		var wantHistory = charts.length > 0 || q('#limits') || q('#drops');
		var wantL3 = page === 'l3';
		Promise.allSettled([
			wantStatus ? getJSON('/api/status') : null,
			wantHistory ? getJSON(historyPath()) : null,
			wantL3 ? getJSON('/api/l3') : null,
		]).then(function (res) {
			var st = res[0].value, h = res[1].value, l3 = res[2].value;
			var failed = res.filter(function (r) {
				return r.status === 'rejected';
			});
			if (failed.some(function (r) { return r.reason instanceof SessionEnded; })) {
				notice('poll', 'The session ended: live updates stopped.', { href: '/login', text: 'Log in again' });
				return; // no more polling
			}
			if (st) {
				updateCounts(st);
				updateTunnels(st);
			}
			if (l3) updateL3(l3, st);
			if (h) {
				updateCharts(h);
				updateCounters(h);
			}
			// A chart with nothing to draw yet says so.
			charts.forEach(function (c) {
				c.el.classList.toggle('nodata', !c.plot);
			});
			var err = res[0].status === 'rejected' ? res[0].reason : res[2].status === 'rejected' ? res[2].reason : null;
			notice('poll', err ? 'Live updates failed (' + err.message + '); retrying.' : '');
			setTimeout(tick, POLL_MS);
		});
	}

	// Copy buttons next to a token or config shown once: they show only
	// where the browser lets a page write the clipboard (HTTPS or
	// loopback).
	function copyButtons() {
		if (!navigator.clipboard || !window.isSecureContext) return;
		qa('button.copy[data-copy]').forEach(function (b) {
			var src = document.getElementById(b.dataset.copy);
			if (!src) return;
			b.hidden = false;
			b.addEventListener('click', function () {
				navigator.clipboard.writeText(src.textContent).then(function () {
					b.textContent = 'Copied';
				}, function () {
					b.textContent = 'Select and copy by hand';
				});
			});
		});
	}

	// A form with data-confirm asks before it posts: deleting a tunnel or
	// rotating its token cuts its connectors, removing an L3 peer cuts it
	// off. Without scripts the forms post at once.
	function confirmForms() {
		document.addEventListener('submit', function (ev) {
			var msg = ev.target.getAttribute && ev.target.getAttribute('data-confirm');
			if (msg && !window.confirm(msg)) ev.preventDefault();
		});
	}

	function start() {
		confirmForms();
		copyButtons();
		charts = qa('.chart').map(makeChart);
		watchSizes();
		tick();
	}

	if (document.readyState === 'loading') {
		document.addEventListener('DOMContentLoaded', start);
	} else {
		start();
	}
})();

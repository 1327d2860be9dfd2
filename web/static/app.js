// keyledger settings page: list, create and revoke API keys for one user of
// one organization. Runs under a strict CSP: no inline code, no eval, and
// the DOM is built with textContent only (key names are user input). The
// widget token lives in this closure and nowhere else.
(function () {
  'use strict';

  var PERM_ORG = 'widgets:api-keys:manage';
  var PERM_SELF = 'widgets:user-api-keys:manage-self';
  var PERM_ALL = 'widgets:user-api-keys:manage-all';
  var DAY = 24 * 60 * 60 * 1000;
  var PAGE = 100;

  function $(id) { return document.getElementById(id); }

  var el = {
    app: $('app'), title: $('title'), intro: $('intro'), createBtn: $('create-btn'),
    alert: $('alert'), status: $('status'),
    keys: $('keys'), table: $('key-table'), caption: $('caption'), rows: $('key-rows'), empty: $('empty'),
    createDialog: $('create-dialog'), createForm: $('create-form'), createIntro: $('create-intro'),
    keyName: $('key-name'), keyNameError: $('key-name-error'),
    permHint: $('perm-hint'), permList: $('perm-list'),
    keyExpiry: $('key-expiry'), keyExpiryError: $('key-expiry-error'),
    createError: $('create-error'), createCancel: $('create-cancel'), createSubmit: $('create-submit'),
    secretDialog: $('secret-dialog'), secretSlot: $('secret-slot'), copyBtn: $('copy-btn'),
    copyStatus: $('copy-status'), secretDone: $('secret-done'),
    revokeDialog: $('revoke-dialog'), revokeName: $('revoke-name'), revokeDetail: $('revoke-detail'),
    revokeError: $('revoke-error'), revokeCancel: $('revoke-cancel'), revokeConfirm: $('revoke-confirm')
  };

  var state = {
    token: null,        // the widget token: memory only
    scope: 'user',
    session: null,
    keys: [],
    canCreate: false,
    showOwner: false,
    over: false,        // the session ended (401): controls stay disabled
    epoch: 0,           // bumped on every start (new token)
    generation: 0,      // bumped on every list load; stale loads are dropped
    creating: false,
    loadFailed: false,  // the alert says the list could not be loaded
    revoking: null,     // the key the revoke dialog is about
    createdName: null,  // name of the key whose value the secret dialog shows
    revokeButtons: new Map()
  };

  // Where focus goes back to when a dialog closes: an element, or the id of
  // a key whose Revoke button it is (rows are rebuilt on every refresh).
  var openers = new Map();

  // ---------- token ----------

  // takeToken reads #token=… once and removes the fragment from the address
  // bar (and from the session history entry).
  function takeToken() {
    var hash = location.hash.replace(/^#/, '');
    if (!hash) return null;
    var token = new URLSearchParams(hash).get('token');
    history.replaceState(history.state, '', location.pathname + location.search);
    return token || null;
  }

  // ---------- API ----------

  function ApiError(status, code, message) {
    this.status = status;
    this.code = code || '';
    this.message = message;
  }

  async function api(method, path, body) {
    var epoch = state.epoch;
    if (!state.token) throw new ApiError(401, 'unauthorized', 'There is no session.');
    var opts = {
      method: method,
      headers: { 'Authorization': 'Bearer ' + state.token, 'Accept': 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      redirect: 'error',
      referrerPolicy: 'no-referrer'
    };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    var resp;
    try {
      resp = await fetch(path, opts);
    } catch (e) {
      throw new ApiError(0, 'network', 'keyledger could not be reached. Check your connection and try again.');
    }
    var data = null;
    try {
      var text = await resp.text();
      data = text ? JSON.parse(text) : null;
    } catch (e) {
      data = null;
    }
    if (resp.ok) return data;
    var code = data && typeof data.code === 'string' ? data.code : '';
    var message = data && typeof data.message === 'string' && data.message ? data.message : 'The request failed (HTTP ' + resp.status + ').';
    if (resp.status === 401 && epoch === state.epoch) sessionOver(code);
    throw new ApiError(resp.status, code, message);
  }

  function orgPath() {
    return '/organizations/' + encodeURIComponent(state.session.organization_id) + '/api_keys';
  }

  // ---------- messages ----------

  function setState(s) { el.app.dataset.state = s; }

  function announce(msg) { el.status.textContent = msg; }

  function showAlert(msg, kind) {
    el.alert.textContent = msg;
    el.alert.className = 'alert' + (kind ? ' ' + kind : '');
  }

  function clearAlert() {
    el.alert.textContent = '';
    el.alert.className = 'alert';
  }

  // fatal ends the page with a message: nothing to list, nothing to do.
  function fatal(msg, kind) {
    el.createBtn.hidden = true;
    el.keys.hidden = true;
    announce('');
    showAlert(msg, kind);
    setState('error');
  }

  function sessionOver(code) {
    if (state.over) return;
    state.over = true;
    state.token = null;
    state.generation++;
    var why = code === 'widget_token_expired' ? 'it has expired' : 'it is no longer valid';
    showAlert('Your session is over: ' + why + '. Reload the page to start a new session.');
    disableControls(true);
    [el.createDialog, el.revokeDialog].forEach(function (d) {
      if (d.open) closeDialog(d, el.alert);
    });
    announce('');
    setState('over');
    el.alert.focus();
  }

  // disableControls turns every control off (or back on), except those of
  // the dialog showing a new key's value: that value must stay copyable.
  function disableControls(off) {
    document.querySelectorAll('button, input, textarea, select').forEach(function (c) {
      if (!el.secretDialog.contains(c)) c.disabled = off;
    });
  }

  // ---------- start ----------

  async function start() {
    var epoch = ++state.epoch;
    state.over = false;
    state.session = null;
    state.keys = [];
    state.canCreate = false;
    state.showOwner = false;
    state.generation++;
    disableControls(false);
    clearAlert();
    el.createBtn.hidden = true;
    el.keys.hidden = true;

    var scope = new URLSearchParams(location.search).get('scope') || 'user';
    if (scope !== 'user' && scope !== 'organization') {
      fatal('This page shows user or organization keys: the address asks for scope “' + scope + '”, which does not exist.');
      return;
    }
    state.scope = scope;
    el.title.textContent = scope === 'organization' ? 'Organization API keys' : 'Your API keys';
    if (!state.token) {
      fatal('This page has no widget token, so it cannot show any keys. Open it from your application, which adds a token to the address.');
      return;
    }

    setState('loading');
    announce('Loading…');
    var session;
    try {
      session = await api('GET', '/widgets/session');
    } catch (e) {
      if (epoch === state.epoch && !state.over) fatal('The session could not be loaded: ' + e.message);
      return;
    }
    if (epoch !== state.epoch) return;
    state.session = session;
    var perms = session.permissions || [];
    var self = perms.indexOf(PERM_SELF) >= 0, all = perms.indexOf(PERM_ALL) >= 0, org = perms.indexOf(PERM_ORG) >= 0;

    if (scope === 'organization') {
      el.intro.textContent = 'Organization keys belong to the organization, not to a member: they keep working when someone leaves. Use them for shared integrations such as a CI pipeline. A key is shown once, when it is created.';
      if (!org) {
        fatal('You may not manage this organization’s API keys. Ask an administrator of your organization for access.', 'info');
        return;
      }
      state.canCreate = true;
      state.showOwner = true;
    } else {
      if (!self && !all) {
        fatal('You may not manage user API keys in this organization. Ask an administrator of your organization for access.', 'info');
        return;
      }
      state.canCreate = true;
      state.showOwner = all;
      if (all) {
        el.title.textContent = 'User API keys';
        el.intro.textContent = 'Every member’s personal API keys in this organization. As an administrator you may revoke any of them; keys you create belong to you. A key is shown once, when it is created.';
      } else {
        el.intro.textContent = 'Keys you create act as you, with only the permissions you give them, for your own scripts and tools. A key is shown once, when it is created.';
      }
    }
    el.createBtn.hidden = !state.canCreate;
    el.keys.hidden = false;
    await refresh();
  }

  // refresh loads every active key the session may see, page by page.
  async function refresh() {
    var gen = ++state.generation;
    el.keys.setAttribute('aria-busy', 'true');
    var ownerType = state.scope === 'organization' ? 'organization' : 'user';
    var all = [], after = null, seen = new Set();
    try {
      for (;;) {
        var q = '?owner_type=' + ownerType + '&status=active&limit=' + PAGE + (after ? '&after=' + encodeURIComponent(after) : '');
        var list = await api('GET', orgPath() + q);
        if (gen !== state.generation) return;
        all = all.concat((list && list.data) || []);
        after = list && list.list_metadata ? list.list_metadata.after : null;
        if (!after || seen.has(after)) break;
        seen.add(after);
      }
    } catch (e) {
      if (gen !== state.generation || state.over) return;
      el.keys.setAttribute('aria-busy', 'false');
      showAlert('The keys could not be loaded: ' + e.message);
      state.loadFailed = true;
      setState('ready');
      return;
    }
    if (state.loadFailed) {
      state.loadFailed = false;
      clearAlert();
    }
    state.keys = all.filter(isActive);
    render();
    el.keys.setAttribute('aria-busy', 'false');
    if (el.status.textContent === 'Loading…') announce('');
    setState('ready');
  }

  function isActive(k) {
    return k.status === 'active' && (!k.expires_at || Date.parse(k.expires_at) > Date.now());
  }

  // ---------- list ----------

  var dateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
  var dateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
  var utcDateFmt = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', timeZone: 'UTC' });
  var utcDateTimeFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'long', timeZone: 'UTC' });

  function node(tag, className, text) {
    var n = document.createElement(tag);
    if (className) n.className = className;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  function timeNode(iso, fmt, titleFmt) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return document.createTextNode('—');
    var t = node('time', null, fmt.format(d));
    t.dateTime = d.toISOString();
    t.title = titleFmt.format(d);
    return t;
  }

  // unusedDays is how many whole days a key has gone unused when that is
  // more than the session's stale_after_days, else 0.
  function unusedDays(k) {
    var limit = state.session && state.session.stale_after_days;
    if (!limit || limit <= 0) return 0;
    var since = Date.parse(k.last_used_at || k.created_at);
    if (isNaN(since)) return 0;
    var ms = Date.now() - since;
    return ms > limit * DAY ? Math.floor(ms / DAY) : 0;
  }

  function ownerText(k) {
    if (!k.owner) return '';
    if (k.owner.type === 'organization') return 'Organization';
    if (state.session && k.owner.id === state.session.user_id) return k.owner.id + ' (you)';
    return k.owner.id;
  }

  function cell(row, label, className) {
    var td = node('td', className);
    td.dataset.label = label;
    row.appendChild(td);
    return td;
  }

  function render() {
    var keys = state.keys;
    // A re-render keeps focus on the same key's button.
    var focusedKey = null;
    state.revokeButtons.forEach(function (b, id) { if (b === document.activeElement) focusedKey = id; });
    state.revokeButtons = new Map();
    el.rows.replaceChildren();
    document.querySelectorAll('#key-table .col-owner').forEach(function (th) { th.hidden = !state.showOwner; });
    el.caption.textContent = (state.scope === 'organization' ? 'Active organization keys' : 'Active keys') + ' (' + keys.length + ')';
    el.table.hidden = keys.length === 0;
    el.empty.hidden = keys.length !== 0;
    el.empty.textContent = state.scope === 'organization' ? 'This organization has no active API keys.' : (state.showOwner ? 'No member has an active API key.' : 'You have no active API keys.');

    keys.forEach(function (k) {
      var tr = node('tr');
      tr.dataset.keyId = k.id;

      var name = node('th', 'key-name');
      name.scope = 'row';
      name.appendChild(node('span', 'name', k.name));
      name.appendChild(node('code', 'masked', k.obfuscated_value));
      tr.appendChild(name);

      var permsCell = cell(tr, 'Permissions', 'key-perms');
      if (k.permissions && k.permissions.length) {
        var ul = node('ul', 'chips');
        k.permissions.forEach(function (p) { ul.appendChild(node('li', 'chip', p)); });
        permsCell.appendChild(ul);
      } else {
        permsCell.appendChild(node('span', 'muted', 'none'));
      }

      if (state.showOwner) cell(tr, 'Owner', 'key-owner').textContent = ownerText(k);

      cell(tr, 'Created', 'key-created').appendChild(timeNode(k.created_at, dateFmt, dateTimeFmt));

      var used = cell(tr, 'Last used', 'key-used');
      if (k.last_used_at) used.appendChild(timeNode(k.last_used_at, dateFmt, dateTimeFmt));
      else used.appendChild(node('span', 'muted', 'never'));
      var days = unusedDays(k);
      if (days) used.appendChild(node('span', 'badge warn', 'unused for ' + days + ' days'));

      var exp = cell(tr, 'Expires', 'key-expires');
      if (k.expires_at) exp.appendChild(timeNode(k.expires_at, utcDateFmt, utcDateTimeFmt));
      else exp.appendChild(node('span', 'muted', 'never'));

      var act = cell(tr, 'Actions', 'key-actions');
      var btn = node('button', 'btn danger-outline small', 'Revoke');
      btn.type = 'button';
      btn.setAttribute('aria-label', 'Revoke ' + k.name);
      btn.disabled = state.over;
      btn.addEventListener('click', function () { openRevoke(k); });
      act.appendChild(btn);
      state.revokeButtons.set(k.id, btn);

      el.rows.appendChild(tr);
    });
    fitTable();
    if (focusedKey !== null) {
      var again = state.revokeButtons.get(focusedKey);
      if (again) again.focus();
      else if (!el.createBtn.hidden && !el.createBtn.disabled) el.createBtn.focus();
    }
  }

  // fitTable shows the keys as cards below 640px, and wherever the table
  // would be wider than the page (long names, many permissions, the owner
  // column): nothing ever scrolls sideways.
  var narrow = window.matchMedia('(max-width: 40rem)');
  function fitTable() {
    if (el.keys.hidden || el.table.hidden) return;
    el.table.classList.remove('cards');
    if (narrow.matches || el.table.offsetWidth > el.keys.clientWidth) el.table.classList.add('cards');
  }
  var fitPending = false;
  window.addEventListener('resize', function () {
    if (fitPending) return;
    fitPending = true;
    requestAnimationFrame(function () { fitPending = false; fitTable(); });
  });

  // ---------- dialogs ----------

  function openDialog(d, opener, focus) {
    openers.set(d, opener);
    d.showModal();
    if (focus) focus.focus();
  }

  function restoreFocus(d) {
    var o = openers.get(d);
    openers.delete(d);
    if (typeof o === 'string') o = state.revokeButtons.get(o);
    if (o && document.contains(o) && !o.disabled && !o.hidden) { o.focus(); return; }
    if (!el.createBtn.hidden && !el.createBtn.disabled) { el.createBtn.focus(); return; }
    el.title.tabIndex = -1;
    el.title.focus();
  }

  // closeDialog closes d and moves focus to target at once.
  function closeDialog(d, target) {
    openers.set(d, target);
    if (d.open) d.close();
    restoreFocus(d);
  }

  // A dialog the user closes (Escape, Cancel) gives focus back to what
  // opened it. The close event comes in a later task: by then the page may
  // have moved focus itself (closeDialog), or a quick user may have opened
  // the dialog again, and those win.
  [el.createDialog, el.secretDialog, el.revokeDialog].forEach(function (d) {
    d.addEventListener('close', function () { if (!d.open && openers.has(d)) restoreFocus(d); });
  });

  // ---------- create ----------

  function offeredPermissions() {
    var cat = (state.session && state.session.catalogue) || [];
    var up = state.session && state.session.user_permissions;
    if (state.scope === 'user' && Array.isArray(up)) return cat.filter(function (p) { return up.indexOf(p) >= 0; });
    return cat.slice();
  }

  // dialogError shows msg in a dialog's error line, or on the page when the
  // user closed the dialog while the request was under way.
  function dialogError(d, errEl, msg) {
    if (d.open) errEl.textContent = msg;
    else showAlert(msg);
  }

  function fieldError(input, errEl, msg) {
    errEl.textContent = msg;
    if (msg) input.setAttribute('aria-invalid', 'true');
    else input.removeAttribute('aria-invalid');
  }

  function todayUTC() { return new Date().toISOString().slice(0, 10); }

  function openCreate() {
    if (!state.canCreate || state.over) return;
    el.createForm.reset();
    fieldError(el.keyName, el.keyNameError, '');
    fieldError(el.keyExpiry, el.keyExpiryError, '');
    el.createError.textContent = '';
    el.keyExpiry.min = todayUTC();
    el.createIntro.textContent = state.scope === 'organization'
      ? 'The key belongs to the organization and carries only the permissions you choose.'
      : 'The key belongs to you and carries only the permissions you choose.';

    var offered = offeredPermissions();
    el.permList.replaceChildren();
    offered.forEach(function (p) {
      var label = node('label', 'check');
      var box = document.createElement('input');
      box.type = 'checkbox';
      box.name = 'permission';
      box.value = p;
      label.appendChild(box);
      label.appendChild(node('span', null, p));
      el.permList.appendChild(label);
    });
    if (offered.length === 0) el.permHint.textContent = 'No permission is available to give a key: it will carry none.';
    else if (state.scope === 'user' && Array.isArray(state.session.user_permissions)) el.permHint.textContent = 'Choose what the key may do. Only permissions you have yourself are offered.';
    else el.permHint.textContent = 'Choose what the key may do.';

    openDialog(el.createDialog, el.createBtn, el.keyName);
  }

  // endOfDayUTC turns YYYY-MM-DD into the last second of that day, UTC.
  function endOfDayUTC(v) {
    if (!/^\d{4}-\d{2}-\d{2}$/.test(v)) return null;
    var d = new Date(v + 'T23:59:59Z');
    if (isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== v) return null;
    return v + 'T23:59:59Z';
  }

  async function submitCreate(ev) {
    ev.preventDefault();
    if (state.creating || state.over) return;
    fieldError(el.keyName, el.keyNameError, '');
    fieldError(el.keyExpiry, el.keyExpiryError, '');
    el.createError.textContent = '';

    var name = el.keyName.value.trim();
    if (!name) {
      fieldError(el.keyName, el.keyNameError, 'Enter a name for the key.');
      el.keyName.focus();
      return;
    }
    var body = { name: name, permissions: [] };
    el.permList.querySelectorAll('input[name="permission"]:checked').forEach(function (b) { body.permissions.push(b.value); });
    if (state.scope === 'user') body.user_id = state.session.user_id;
    var expiry = el.keyExpiry.value;
    if (expiry) {
      var at = endOfDayUTC(expiry);
      if (!at) {
        fieldError(el.keyExpiry, el.keyExpiryError, 'Enter a date as YYYY-MM-DD.');
        el.keyExpiry.focus();
        return;
      }
      if (Date.parse(at) <= Date.now()) {
        fieldError(el.keyExpiry, el.keyExpiryError, 'Choose today or a later date.');
        el.keyExpiry.focus();
        return;
      }
      body.expires_at = at;
    }

    state.creating = true;
    el.createSubmit.disabled = true;
    el.createSubmit.textContent = 'Creating…';
    var created;
    try {
      created = await api('POST', orgPath(), body);
    } catch (e) {
      if (state.over) return;
      if (!el.createDialog.open) {
        showAlert('The key was not created: ' + e.message);
      } else if (e.code === 'invalid_name') {
        fieldError(el.keyName, el.keyNameError, e.message);
        el.keyName.focus();
      } else if (e.code === 'invalid_expires_at') {
        fieldError(el.keyExpiry, el.keyExpiryError, e.message);
        el.keyExpiry.focus();
      } else {
        el.createError.textContent = 'The key was not created: ' + e.message;
      }
      return;
    } finally {
      state.creating = false;
      el.createSubmit.textContent = 'Create key';
      el.createSubmit.disabled = state.over;
    }
    var value = created.value;
    delete created.value;
    state.keys = [created].concat(state.keys.filter(function (k) { return k.id !== created.id; }));
    // The create dialog hands over to the secret dialog, which returns
    // focus to the Create button.
    openers.delete(el.createDialog);
    if (el.createDialog.open) el.createDialog.close();
    showSecret(value, created.name);
  }

  // ---------- the new key's value, shown once ----------

  function showSecret(value, name) {
    state.createdName = name;
    var field = document.createElement('textarea');
    field.id = 'secret-value';
    field.className = 'secret';
    field.readOnly = true;
    field.rows = 2;
    field.spellcheck = false;
    field.setAttribute('autocomplete', 'off');
    field.setAttribute('autocapitalize', 'off');
    field.value = value; // the property, never an attribute or text node
    el.secretSlot.replaceChildren(field);
    el.copyStatus.textContent = '';
    openDialog(el.secretDialog, el.createBtn, field);
    field.select();
  }

  async function copySecret() {
    var field = $('secret-value');
    if (!field) return;
    try {
      if (!navigator.clipboard || !navigator.clipboard.writeText) throw new Error('no clipboard');
      await navigator.clipboard.writeText(field.value);
      el.copyStatus.textContent = 'Copied to the clipboard.';
    } catch (e) {
      field.focus();
      field.select();
      el.copyStatus.textContent = 'Could not copy automatically. The key is selected: press Ctrl+C (⌘C on a Mac) to copy it.';
    }
  }

  el.secretDialog.addEventListener('close', function () {
    if (el.secretDialog.open) return; // a newer key is showing
    // Remove the value from the document entirely.
    var field = $('secret-value');
    if (field) field.value = '';
    el.secretSlot.replaceChildren();
    el.copyStatus.textContent = '';
    var name = state.createdName;
    state.createdName = null;
    if (state.over) return;
    render();
    announce('Key “' + name + '” created.');
    refresh();
  });

  // ---------- revoke ----------

  function openRevoke(k) {
    if (state.over) return;
    state.revoking = k;
    el.revokeName.textContent = '“' + k.name + '”';
    var detail = k.obfuscated_value;
    if (state.showOwner && k.owner && k.owner.type === 'user') detail += ', owned by ' + ownerText(k);
    el.revokeDetail.textContent = '(' + detail + ')';
    el.revokeError.textContent = '';
    el.revokeConfirm.disabled = false;
    el.revokeConfirm.textContent = 'Revoke key';
    openDialog(el.revokeDialog, k.id, el.revokeCancel);
  }

  async function confirmRevoke() {
    var k = state.revoking;
    if (!k || el.revokeConfirm.disabled || state.over) return;
    el.revokeConfirm.disabled = true;
    el.revokeConfirm.textContent = 'Revoking…';
    el.revokeError.textContent = '';
    try {
      await api('DELETE', '/api_keys/' + encodeURIComponent(k.id));
    } catch (e) {
      if (state.over) return;
      if (e.status !== 404) { // 404: it is gone already
        dialogError(el.revokeDialog, el.revokeError, 'The key was not revoked: ' + e.message);
        el.revokeConfirm.disabled = false;
        el.revokeConfirm.textContent = 'Revoke key';
        return;
      }
    }
    // Focus moves to the next key's Revoke button (or the previous one).
    var i = state.keys.findIndex(function (x) { return x.id === k.id; });
    var next = state.keys[i + 1] || state.keys[i - 1];
    state.keys = state.keys.filter(function (x) { return x.id !== k.id; });
    state.revoking = null;
    render();
    closeDialog(el.revokeDialog, next ? next.id : null);
    announce('Key “' + k.name + '” revoked.');
    refresh();
  }

  // ---------- wiring ----------

  el.createBtn.addEventListener('click', openCreate);
  el.createForm.addEventListener('submit', submitCreate);
  el.createCancel.addEventListener('click', function () { el.createDialog.close(); });
  el.copyBtn.addEventListener('click', copySecret);
  el.secretDone.addEventListener('click', function () { el.secretDialog.close(); });
  el.revokeCancel.addEventListener('click', function () { el.revokeDialog.close(); });
  el.revokeConfirm.addEventListener('click', confirmRevoke);
  el.revokeDialog.addEventListener('close', function () { if (!el.revokeDialog.open) state.revoking = null; });

  // The host may hand over a fresh token by navigating the frame to the
  // same page with a new #token=… fragment.
  window.addEventListener('hashchange', function () {
    var t = takeToken();
    if (!t) return;
    state.token = t;
    start();
  });

  state.token = takeToken();
  start();
})();

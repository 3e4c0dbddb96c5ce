// The New run page (/new, and /new?from=ID to run a run again, edited or
// not): the fields of `errand run`, checked by the server before anything is
// queued (each error beside its field), one run or a fan-out of harnesses x
// models; then the run's live page (or the fan-out's comparison page).

import { h, onCtrlEnter } from './util.js';
import { getJson, postJson, HttpError, loginIfUnauthorized, whoAmI, may } from './api.js';

const DRAFT = 'errand.draft';

function loadDraft() {
  try {
    return JSON.parse(localStorage.getItem(DRAFT) || 'null') || {};
  } catch {
    return {};
  }
}

function saveDraft(d) {
  try {
    localStorage.setItem(DRAFT, JSON.stringify(d));
  } catch {
    /* storage disabled: no draft */
  }
}

function clearDraft() {
  try {
    localStorage.removeItem(DRAFT);
  } catch {
    /* nothing kept */
  }
}

/** A random fan-out group id (letters and digits, as the CLI's). */
function groupId() {
  const a = new Uint8Array(6);
  crypto.getRandomValues(a);
  return Array.from(a, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** A labelled field: its control, a hint, and the place its error goes. */
function field(name, label, control, hint) {
  const err = h('div', { class: 'field-error', 'data-for': name, role: 'alert', hidden: true });
  return {
    el: h('div', { class: 'field', 'data-field': name }, h('label', { for: `f-${name}` }, label), control, hint ? h('div', { class: 'hint dim' }, hint) : null, err),
    err,
  };
}

function list(text) {
  return String(text || '')
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean);
}

/** Renders the New run page into `root`. */
export async function newRunPage(root) {
  document.title = 'new run · errand';
  const params = new URLSearchParams(location.search);
  const from = params.get('from');
  let opts;
  let me;
  let prior = null;
  try {
    [opts, me, prior] = await Promise.all([getJson('/api/v1/options'), whoAmI(), from ? getJson(`/api/v1/runs/${encodeURIComponent(from)}`) : null]);
  } catch (e) {
    if (loginIfUnauthorized(e)) return;
    root.replaceChildren(h('div', { class: 'empty-page bad' }, `Cannot start a run here: ${e.message}`));
    return;
  }
  if (!may(me, 'run')) {
    root.replaceChildren(
      h('div', { class: 'empty-page' }, h('h1', null, 'New run'), h('p', { class: 'bad no-run-scope' }, `This token (${me ? me.name : 'unknown'}) may read runs but not start them: it lacks the 'run' scope.`), h('a', { href: '/' }, 'Back to the runs')),
    );
    return;
  }
  const draft = prior
    ? {
        repo: prior.repo_input || prior.repo || '',
        base: prior.base || '',
        prompt: prior.prompt || '',
        harnesses: [prior.harness],
        models: prior.model || '',
        push: prior.push,
        timeout: prior.timeout_secs ? Math.round(prior.timeout_secs / 60) : '',
        cost: prior.max_cost_usd ?? '',
        sandbox: prior.sandbox || '',
      }
    : loadDraft();

  // Recent repositories first, then the GitHub App's (each once).
  const offered = [...new Set([...(opts.recent_repos || []), ...(opts.forge_repos || [])])];
  const repos = h('datalist', { id: 'recent-repos' }, offered.map((r) => h('option', { value: r })));
  const repo = h('input', { id: 'f-repo', name: 'repo', type: 'text', list: 'recent-repos', spellcheck: 'false', autocomplete: 'off', placeholder: 'github:owner/repo, a git URL, or empty for a new project' });
  repo.value = draft.repo || '';
  const base = h('input', { id: 'f-base', name: 'base', type: 'text', spellcheck: 'false', placeholder: "the repository's default branch" });
  base.value = draft.base || '';
  const prompt = h('textarea', { id: 'f-prompt', name: 'prompt', rows: 8, placeholder: 'What should the agent do?  (Ctrl-Enter starts it)', required: true });
  prompt.value = draft.prompt || '';

  const chosen = new Set(draft.harnesses && draft.harnesses.length ? draft.harnesses : [opts.default_harness]);
  const harnessBoxes = (opts.harnesses || []).map((hs) => {
    const box = h('input', { type: 'checkbox', name: 'harness', value: hs.name });
    box.checked = chosen.has(hs.name);
    const warn = hs.missing_env && hs.missing_env.length ? h('span', { class: 'warn' }, ` needs ${hs.missing_env.join(', ')}`) : null;
    return { hs, box, el: h('label', { class: 'choice' }, box, ` ${hs.name}`, warn) };
  });
  const harnessList = h('div', { id: 'f-harness', class: 'choices' }, harnessBoxes.map((b) => b.el));
  const modelHints = h('datalist', { id: 'allowed-models' }, (opts.models || []).filter((m) => !m.endsWith('*')).map((m) => h('option', { value: m })));
  const models = h('input', { id: 'f-model', name: 'model', type: 'text', list: 'allowed-models', spellcheck: 'false', placeholder: "the harness's default; several, comma-separated, fan out" });
  models.value = draft.models || '';
  const push = h('input', { id: 'f-push', name: 'push', type: 'checkbox' });
  push.checked = Boolean(draft.push);
  const timeout = h('input', { id: 'f-timeout', name: 'timeout', type: 'number', min: 1, step: 1, placeholder: String(Math.round((opts.default_timeout_secs || 1800) / 60)) });
  timeout.value = draft.timeout ?? '';
  const cost = h('input', { id: 'f-cost', name: 'cost', type: 'number', min: 0, step: 'any', placeholder: opts.max_cost_usd ? String(opts.max_cost_usd) : 'no limit' });
  cost.value = draft.cost ?? '';

  const fRepo = field('repo', 'Repository', h('span', null, repo, repos), opts.local_repos ? 'A path on the server is allowed under its server.local_repos.' : null);
  const fBase = field('base', 'Base branch', base);
  const fPrompt = field('prompt', 'Instruction', prompt, 'Kept as a draft in this browser until the run starts.');
  const fHarness = field('harness', 'Harness', harnessList, 'Several harnesses (or models) start a fan-out, compared side by side.');
  const fModel = field('model', 'Model', h('span', null, models, modelHints), opts.models && opts.models.length ? `Allowed here: ${opts.models.join(', ')}` : null);
  const fPush = field('push', 'Pull request', h('label', { class: 'choice' }, push, ' push the branch and open a pull request'));
  const fTimeout = field('timeout_secs', 'Timeout (minutes)', timeout);
  const fCost = field('max_cost_usd', 'Budget (US$)', cost);
  // A choice when the server offers several backends (sandbox.choices).
  const offeredSandboxes = opts.sandboxes && opts.sandboxes.length ? opts.sandboxes : [opts.sandbox || 'local'];
  const sandbox = h('select', { id: 'f-sandbox', name: 'sandbox' }, offeredSandboxes.map((b) => h('option', { value: b }, b === opts.sandbox ? `${b} (default)` : b)));
  sandbox.value = offeredSandboxes.includes(draft.sandbox) ? draft.sandbox : opts.sandbox || offeredSandboxes[0];
  sandbox.disabled = offeredSandboxes.length < 2;
  const fSandbox = field('sandbox', 'Sandbox', sandbox, offeredSandboxes.length < 2 ? "This server's only backend (sandbox.backend)." : 'Where the agent runs: the backends this server offers (sandbox.backend and sandbox.choices).');
  const fields = [fRepo, fBase, fPrompt, fHarness, fModel, fPush, fTimeout, fCost, fSandbox];
  const byName = { repo: fRepo, base: fBase, prompt: fPrompt, harness: fHarness, model: fModel, push: fPush, agent_git: fPush, timeout_secs: fTimeout, max_cost_usd: fCost, max_tokens: fCost, group: fHarness, sandbox: fSandbox };

  const general = h('div', { class: 'form-error bad', role: 'alert', hidden: true });
  const start = h('button', { type: 'submit', class: 'primary start' }, 'Start');
  const form = h(
    'form',
    { class: 'new-run', novalidate: true },
    h('div', { class: 'page-head' }, h('h1', null, prior ? `Run ${prior.short_id} again` : 'New run')),
    fields.map((f) => f.el),
    general,
    h('div', { class: 'form-actions' }, start, h('span', { class: 'dim' }, 'Ctrl-Enter')),
  );
  root.replaceChildren(h('div', { class: 'new-page' }, form));
  if (!prompt.value) prompt.focus();

  const keep = () => {
    if (prior) return;
    saveDraft({
      repo: repo.value,
      base: base.value,
      prompt: prompt.value,
      harnesses: harnessBoxes.filter((b) => b.box.checked).map((b) => b.hs.name),
      models: models.value,
      push: push.checked,
      timeout: timeout.value,
      cost: cost.value,
      sandbox: sandbox.value,
    });
  };
  form.addEventListener('input', keep);
  form.addEventListener('change', keep);

  const clearErrors = () => {
    for (const f of fields) {
      f.err.hidden = true;
      f.err.textContent = '';
      f.el.classList.remove('invalid');
    }
    general.hidden = true;
  };
  const showError = (name, message) => {
    const f = byName[name];
    if (!f) {
      general.textContent = message;
      general.hidden = false;
      return;
    }
    f.err.textContent = message;
    f.err.hidden = false;
    f.el.classList.add('invalid');
  };

  /** The runs to start: one per chosen harness and model. */
  const bodies = () => {
    const hs = harnessBoxes.filter((b) => b.box.checked).map((b) => b.hs);
    const ms = list(models.value);
    const out = [];
    for (const hs1 of hs) {
      for (const m of ms.length && hs1.model_choice ? ms : [null]) {
        const b = { prompt: prompt.value, harness: hs1.name, push: push.checked };
        if (repo.value.trim()) b.repo = repo.value.trim();
        if (base.value.trim()) b.base = base.value.trim();
        if (m) b.model = m;
        if (timeout.value) b.timeout_secs = Math.round(Number(timeout.value) * 60);
        if (cost.value) b.max_cost_usd = Number(cost.value);
        if (sandbox.value && sandbox.value !== opts.sandbox) b.sandbox = sandbox.value;
        out.push(b);
      }
    }
    return out;
  };

  let busy = false;
  const submit = async () => {
    if (busy) return;
    clearErrors();
    if (!prompt.value.trim()) return showError('prompt', 'Say what the agent should do.');
    const runs = bodies();
    if (!runs.length) return showError('harness', 'Choose at least one harness.');
    if (timeout.value && !(Number(timeout.value) > 0)) return showError('timeout_secs', 'A positive number of minutes.');
    if (runs.length > 1) {
      const g = groupId();
      for (const b of runs) b.group = g;
    }
    busy = true;
    start.disabled = true;
    start.textContent = 'Checking…';
    try {
      // Every run is checked before any is queued, so a fan-out starts whole or not at all.
      for (const b of runs) await postJson('/api/v1/runs?dry_run=true', b);
      start.textContent = 'Starting…';
      const made = [];
      for (const b of runs) made.push(await postJson('/api/v1/runs', b));
      if (!prior) clearDraft();
      location.assign(made.length > 1 ? `/groups/${encodeURIComponent(runs[0].group)}` : `/runs/${encodeURIComponent(made[0].id)}`);
    } catch (e) {
      if (loginIfUnauthorized(e)) return;
      if (e instanceof HttpError && e.field) showError(e.field, e.message);
      else showError(null, e.message || String(e));
      busy = false;
      start.disabled = false;
      start.textContent = 'Start';
    }
  };
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    submit();
  });
  onCtrlEnter(form, submit);
}

// Care Hub, the sandbox's single-page portal: plain JavaScript, no build step, no libraries.
// One document; each screen is drawn here and reached with history.pushState.
'use strict';

const view = document.getElementById('view');
const nav = document.querySelector('nav');
let uid = 0;
// Ids change on every draw, as on the first portal: SOPs find fields by label, never by id.
const newId = () => 'h' + Math.random().toString(36).slice(2, 8) + (uid++);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (v !== false && v !== null && v !== undefined) node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c);
  return node;
}

function go(path, replace) {
  history[replace ? 'replaceState' : 'pushState']({}, '', path);
  render();
}

async function api(method, path, body) {
  const res = await fetch('/hub/api/' + path, {
    method,
    headers: body ? {'Content-Type': 'application/json'} : {},
    body: body ? JSON.stringify(body) : undefined,
    credentials: 'same-origin',
  });
  let data = {};
  try { data = await res.json(); } catch (e) { /* an error page is HTML */ }
  if (res.status === 401 && path !== 'session') {
    // The session ended on the server: back to sign-in, then to this screen.
    const expired = sessionStorage.getItem('hub.signedIn') === '1';
    sessionStorage.removeItem('hub.signedIn');
    signInAgain(expired);
    throw new Error('signed out');
  }
  if (res.status >= 500) {
    showError(res.status);
    throw new Error('server error');
  }
  return {status: res.status, data};
}

function signInAgain(expired) {
  const here = location.pathname + location.search;
  const next = here.startsWith('/hub/signin') ? '' : '?next=' + encodeURIComponent(here);
  sessionStorage.setItem('hub.notice', expired ? 'Your session has expired. Please sign in again.' : '');
  go('/hub/signin' + next, true);
}

function showError(status) {
  nav.hidden = true;
  const [head, text] = status === 503
    ? ['Service Unavailable', 'The portal is temporarily unavailable. Please try again later.']
    : ['Internal Server Error', 'The portal encountered an unexpected error.'];
  document.title = head + ' - Care Hub';
  view.replaceChildren(el('h1', {text: head}), el('p', {role: 'alert', text}));
}

function page(title, ...children) {
  document.title = title + ' - Care Hub';
  view.replaceChildren(el('h1', {text: title}), ...children);
}

function alertBox(form) {
  let box = form.querySelector('[role=alert]');
  if (!box) { box = el('p', {role: 'alert'}); form.prepend(box); }
  return box;
}

function field(label, attrs) {
  const id = newId();
  return [el('label', {for: id, text: label}), el('input', {id, ...attrs})];
}

// --- a custom dropdown: a button (role=combobox) that opens a role=listbox of role=options ---

function dropdown(label, options) {
  const labelId = newId(), listId = newId();
  const box = el('div', {class: 'dropdown'});
  const button = el('button', {type: 'button', role: 'combobox', 'aria-haspopup': 'listbox',
    'aria-expanded': 'false', 'aria-controls': listId, 'aria-labelledby': labelId,
    text: 'Choose…'});
  const list = el('ul', {role: 'listbox', id: listId, 'aria-labelledby': labelId, hidden: true});
  const open = shown => { list.hidden = !shown; button.setAttribute('aria-expanded', String(shown)); };
  for (const name of options) {
    const option = el('li', {role: 'option', 'aria-selected': 'false', text: name});
    option.addEventListener('click', () => {
      box.dataset.value = name;
      button.textContent = name;
      list.querySelectorAll('[role=option]').forEach(o =>
        o.setAttribute('aria-selected', String(o === option)));
      open(false);
    });
    list.append(option);
  }
  button.addEventListener('click', () => open(list.hidden));
  box.append(el('span', {id: labelId, class: 'field-label', text: label}), button, list);
  return box;
}

// --- a shadow-DOM component: the member's fields, in an open shadow root ---------------------

class MemberFields extends HTMLElement {
  constructor() {
    super();
    const root = this.attachShadow({mode: 'open'});
    const style = el('style', {text:
      'label{display:block;margin-top:.8em;font-weight:bold}input{padding:.35em;width:18em}' +
      'fieldset{border:1px solid #bbb;padding:.4em 1em 1em}'});
    const set = el('fieldset', {}, el('legend', {text: 'Member'}),
      ...field('Member ID', {name: 'member_id', autocomplete: 'off'}),
      ...field('Last name', {name: 'last_name', autocomplete: 'off'}),
      ...field('Date of birth', {name: 'dob', placeholder: 'MM/DD/YYYY', autocomplete: 'off'}));
    root.append(style, set);
  }
  values() {
    const out = {};
    this.shadowRoot.querySelectorAll('input').forEach(i => { out[i.name] = i.value; });
    return out;
  }
}
customElements.define('member-fields', MemberFields);

// --- screens --------------------------------------------------------------------------------

function signInScreen() {
  nav.hidden = true;
  const notice = sessionStorage.getItem('hub.notice');
  const [lab, input] = field('Email address', {type: 'email', autocomplete: 'username'});
  const form = el('form', {}, lab, input, el('button', {type: 'submit', text: 'Send passcode'}));
  if (notice) alertBox(form).textContent = notice;
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const {status, data} = await api('POST', 'passcode', {email: input.value});
    if (status !== 200) { alertBox(form).textContent = data.error; return; }
    sessionStorage.setItem('hub.email', input.value.trim().toLowerCase());
    sessionStorage.removeItem('hub.notice');
    go('/hub/signin/passcode' + location.search);
  });
  page('Sign in to Care Hub', form);
}

function passcodeScreen() {
  nav.hidden = true;
  const email = sessionStorage.getItem('hub.email');
  if (!email) return go('/hub/signin' + location.search, true);
  const [lab, input] = field('Passcode', {inputmode: 'numeric', autocomplete: 'one-time-code'});
  const form = el('form', {}, lab, input, el('button', {type: 'submit', text: 'Sign in'}));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    const {status, data} = await api('POST', 'session', {email, passcode: input.value});
    if (status !== 200) { input.value = ''; alertBox(form).textContent = data.error; return; }
    sessionStorage.setItem('hub.signedIn', '1');
    const next = new URLSearchParams(location.search).get('next') || '/hub/';
    go(next.startsWith('/hub/') ? next : '/hub/');
  });
  page('Enter your passcode',
    el('p', {text: `We sent a 6-digit passcode to ${email}. ` +
                   'You can also use the code from your authenticator app.'}),
    form,
    el('p', {}, el('a', {href: '/hub/signin', 'data-route': true, text: 'Use another email'})));
}

function homeScreen(me) {
  page('Care Hub', el('p', {text: `Signed in as ${me.email}.`}),
    el('p', {text: 'Look up a member\'s coverage or a claim from the menu.'}));
}

function eligibilityScreen() {
  const members = el('member-fields');
  const coverage = dropdown('Coverage type', ['Medical', 'Dental', 'Vision']);
  const panel = el('div', {class: 'results'});
  const form = el('form', {}, members, coverage,
    el('button', {type: 'submit', text: 'Look up'}));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    form.querySelector('[role=alert]')?.remove();
    panel.replaceChildren(el('p', {role: 'status', text: 'Looking up…'}));
    const body = {...members.values(), coverage_type: coverage.dataset.value || ''};
    const {status, data} = await api('POST', 'eligibility', body);
    if (status !== 200) { panel.replaceChildren(); alertBox(form).textContent = data.error; return; }
    panel.replaceChildren(el('iframe', {title: 'Eligibility result', src: data.frame}));
  });
  page('Eligibility lookup', form, panel);
}

function claimsScreen() {
  // This field has no <label>: only an aria-label and a placeholder, as some portals do.
  const input = el('input', {id: newId(), 'aria-label': 'Claim number', placeholder: 'CLM-…'});
  const out = el('section', {'aria-label': 'Claim'});
  const form = el('form', {}, input, ' ', el('button', {type: 'submit', text: 'Find claim'}));
  form.addEventListener('submit', async e => {
    e.preventDefault();
    form.querySelector('[role=alert]')?.remove();
    out.replaceChildren();
    const number = input.value.trim();
    if (!number) { alertBox(form).textContent = 'Enter a claim number.'; return; }
    out.append(el('p', {role: 'status', text: 'Searching…'}));
    const {status, data} = await api('GET', 'claims/' + encodeURIComponent(number));
    if (status !== 200) { out.replaceChildren(); alertBox(form).textContent = data.error; return; }
    const rows = [['Claim Number', data.claim_number], ['Member ID', data.member_id],
      ['Service Date', data.service_date], ['Status', data.status], ['Billed', data.billed],
      ['Paid', data.paid], ['Details', data.details]];
    out.replaceChildren(el('h2', {text: 'Claim ' + data.claim_number}),
      el('dl', {}, ...rows.flatMap(([k, v]) => [el('dt', {text: k}), el('dd', {text: v})])));
  });
  page('Claim status', form, out);
}

const SCREENS = {'/hub/': homeScreen, '/hub/eligibility': eligibilityScreen,
  '/hub/claims': claimsScreen};

async function render() {
  const path = location.pathname;
  if (path === '/hub/signin') return signInScreen();
  if (path === '/hub/signin/passcode') return passcodeScreen();
  // The old screen goes at once, as the new one loads.
  view.replaceChildren(el('p', {role: 'status', text: 'Loading…'}));
  let me;
  try { me = (await api('GET', 'me')).data; } catch (e) { return; }
  sessionStorage.setItem('hub.signedIn', '1');
  nav.hidden = false;
  const screen = SCREENS[path];
  if (!screen) return page('Page Not Found', el('p', {text: 'The page you requested does not exist.'}));
  screen(me);
}

document.addEventListener('click', e => {
  const link = e.target.closest('a[data-route]');
  if (!link) return;
  e.preventDefault();
  go(link.getAttribute('href'));
});
document.getElementById('sign-out').addEventListener('click', async () => {
  await api('DELETE', 'session');
  sessionStorage.removeItem('hub.signedIn');
  sessionStorage.removeItem('hub.notice');
  go('/hub/signin');
});
window.addEventListener('popstate', render);
render();

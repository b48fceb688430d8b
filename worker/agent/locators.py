"""Find elements the way a person does: by label, button text, link text, ARIA role and name.

All semantic matching runs in one injected script per lookup, so a lookup costs a single
WebDriver round trip however many candidates the page has. Only visible elements match (a
person cannot use what they cannot see), except that a labelled file input, which portals
often hide behind a styled button, is found even when hidden.
"""

from __future__ import annotations

from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from shared.sop.model import Locator

# Function definitions shared by the finder and the page probe.
_LIB_JS = r"""
const norm = s => (s || '').replace(/\s+/g, ' ').trim().toLowerCase();
// Labels often carry a trailing colon or a required-field star.
const clean = s => norm(s).replace(/[\s:*]+$/, '').trim();
const byId = id => document.getElementById(id);
const txt = el => (el.innerText !== undefined ? el.innerText : el.textContent) || '';
function visible(el) {
  if (!el.isConnected) return false;
  const st = getComputedStyle(el);
  if (st.visibility === 'hidden' || st.display === 'none') return false;
  return el.getClientRects().length > 0;
}
function labelText(lab) {
  if (!lab.querySelector('select, textarea, input')) return txt(lab);
  const copy = lab.cloneNode(true);
  copy.querySelectorAll('select, textarea, input').forEach(c => c.remove());
  return copy.textContent;
}
function refText(el, attr) {
  return (el.getAttribute(attr) || '').split(/\s+/).map(id => byId(id)).filter(Boolean)
    .map(txt).join(' ');
}
const HEADINGS = {H1: 1, H2: 1, H3: 1, H4: 1, H5: 1, H6: 1};
const INPUT_ROLES = {submit: 'button', button: 'button', reset: 'button', image: 'button',
  checkbox: 'checkbox', radio: 'radio', range: 'slider', number: 'spinbutton',
  search: 'searchbox', hidden: null, file: 'button'};
const TAG_ROLES = {BUTTON: 'button', TEXTAREA: 'textbox', OPTION: 'option', TABLE: 'table',
  TR: 'row', TD: 'cell', UL: 'list', OL: 'list', LI: 'listitem', NAV: 'navigation',
  MAIN: 'main', DIALOG: 'dialog', FORM: 'form', ARTICLE: 'article', ASIDE: 'complementary',
  HEADER: 'banner', FOOTER: 'contentinfo', PROGRESS: 'progressbar', OUTPUT: 'status',
  FIELDSET: 'group', HR: 'separator', SUMMARY: 'button', CAPTION: 'caption'};
function roleOf(el) {
  const explicit = el.getAttribute('role');
  if (explicit) return explicit.trim().split(/\s+/)[0].toLowerCase();
  const t = el.tagName;
  if (t in HEADINGS) return 'heading';
  if (t === 'A') return el.hasAttribute('href') ? 'link' : null;
  if (t === 'INPUT') {
    const ty = (el.getAttribute('type') || 'text').toLowerCase();
    return ty in INPUT_ROLES ? INPUT_ROLES[ty] : 'textbox';
  }
  if (t === 'SELECT') return (el.multiple || el.size > 1) ? 'listbox' : 'combobox';
  if (t === 'TH') return el.getAttribute('scope') === 'row' ||
    (el.parentElement && el.parentElement.querySelector('td')) ? 'rowheader' : 'columnheader';
  if (t === 'IMG') return el.getAttribute('alt') === '' ? 'presentation' : 'img';
  if (t === 'SECTION') return el.hasAttribute('aria-label') ||
    el.hasAttribute('aria-labelledby') ? 'region' : null;
  return TAG_ROLES[t] || null;
}
const NAME_FROM_CONTENT = new Set(['button', 'link', 'heading', 'cell', 'columnheader',
  'rowheader', 'option', 'tab', 'menuitem', 'checkbox', 'radio', 'switch', 'treeitem',
  'tooltip', 'listitem', 'row', 'caption']);
function accName(el, role) {
  if (el.hasAttribute('aria-labelledby')) return refText(el, 'aria-labelledby');
  const aria = el.getAttribute('aria-label');
  if (aria && aria.trim()) return aria;
  const t = el.tagName;
  if (t === 'INPUT' || t === 'SELECT' || t === 'TEXTAREA') {
    if (el.labels && el.labels.length) return Array.from(el.labels).map(labelText).join(' ');
    if (t === 'INPUT' && /^(submit|button|reset)$/i.test(el.type)) return el.value;
    return el.getAttribute('placeholder') || el.getAttribute('title') || '';
  }
  if (t === 'TABLE') { const c = el.querySelector('caption'); if (c) return txt(c); }
  if (t === 'FIELDSET') { const l = el.querySelector('legend'); if (l) return txt(l); }
  if (t === 'IMG') return el.getAttribute('alt') || '';
  if (NAME_FROM_CONTENT.has(role)) return txt(el);
  return el.getAttribute('title') || '';
}
function matcher(want, mode) {
  const w = clean(want);
  return mode === 'contains' ? (s => clean(s).includes(w)) : (s => clean(s) === w);
}
function within(root, els) {
  return root === document ? els : els.filter(e => root.contains(e) && e !== root);
}
function byLabel(root, eq) {
  const out = [];
  for (const lab of document.querySelectorAll('label'))
    if (lab.control && eq(labelText(lab))) out.push(lab.control);
  for (const el of document.querySelectorAll('[aria-label]'))
    if (eq(el.getAttribute('aria-label'))) out.push(el);
  for (const el of document.querySelectorAll('[aria-labelledby]'))
    if (eq(refText(el, 'aria-labelledby'))) out.push(el);
  for (const el of document.querySelectorAll('[placeholder]'))
    if (eq(el.getAttribute('placeholder'))) out.push(el);
  return within(root, out);
}
function byText(root, eq) {
  const base = root === document ? document.body : root;
  if (!base) return [];
  const hits = Array.from(base.querySelectorAll('*')).filter(el =>
    !/^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE)$/.test(el.tagName) && eq(txt(el)));
  // Keep the innermost elements: a page's <body> also "contains" the text.
  const innermost = hits.filter(el => !hits.some(o => o !== el && el.contains(o)));
  return innermost;
}
function search(spec, root) {
  if (spec.within) {
    const outer = search(spec.within, root);
    if (!outer.length) return [];
    root = outer[0];
  }
  const mode = spec.match || (spec.kind === 'text' ? 'contains' : 'exact');
  const eq = matcher(spec.kind === 'role' ? (spec.name || '') : spec.value, mode);
  const q = sel => Array.from(root.querySelectorAll(sel));
  let found;
  switch (spec.kind) {
    case 'css': found = q(spec.value); break;
    case 'xpath': {
      const snap = document.evaluate(spec.value, root, null,
        XPathResult.ORDERED_NODE_SNAPSHOT_TYPE, null);
      found = [];
      for (let i = 0; i < snap.snapshotLength; i++) {
        const n = snap.snapshotItem(i);
        if (n.nodeType === 1) found.push(n);
      }
      break;
    }
    case 'label': found = byLabel(root, eq); break;
    case 'button':
      found = q('button, input[type=submit], input[type=button], input[type=reset], ' +
                'input[type=image], [role=button]')
        .filter(el => eq(txt(el)) || eq(el.value || '') || eq(el.getAttribute('aria-label')));
      break;
    case 'link':
      found = q('a[href], [role=link]')
        .filter(el => eq(txt(el)) || eq(el.getAttribute('aria-label')));
      break;
    case 'role':
      found = q('*').filter(el => {
        const r = roleOf(el);
        return r === spec.value.toLowerCase() && (!spec.name || eq(accName(el, r)));
      });
      break;
    case 'text': found = byText(root, eq); break;
    default: found = [];
  }
  found = Array.from(new Set(found));
  let shown = found.filter(visible);
  if (!shown.length && spec.kind === 'label')
    shown = found.filter(el => el.tagName === 'INPUT' && el.type === 'file');
  if (spec.enabled) shown = shown.filter(el => !el.disabled &&
    el.getAttribute('aria-disabled') !== 'true');
  if (spec.nth) shown = shown.slice(spec.nth - 1, spec.nth);
  return shown;
}
"""

_FIND_JS = _LIB_JS + "return search(arguments[0], document);"
_FIRST_SHOWN_JS = (
    _LIB_JS + "return arguments[0].findIndex(spec => search(spec, document).length > 0);"
)

# Reads what a person glances at to tell an error page or the sign-in page.
_PROBE_JS = (
    _LIB_JS
    + r"""
const flat = el => txt(el).replace(/\s+/g, ' ').trim();
const heads = Array.from(document.querySelectorAll('h1, h2, h3, [role=alert], [role=heading]'))
  .map(flat).filter(Boolean);
return {
  url: location.href,
  title: document.title || '',
  headings: heads.join('\n'),
  text: arguments[0] && document.body ? flat(document.body) : '',
  marker: arguments[1] ? search(arguments[1], document).length > 0 : false,
};
"""
)


def spec_of(locator: Locator, *, enabled: bool = False) -> dict[str, Any]:
    """The JSON shape the finder script takes."""
    return {
        "enabled": enabled,
        "kind": locator.kind,
        "value": locator.value,
        "name": locator.name,
        "nth": locator.nth,
        "match": locator.match,
        "within": spec_of(locator.within) if locator.within else None,
    }


def find_all(driver: WebDriver, locator: Locator, *, enabled: bool = False) -> list[WebElement]:
    """Every visible (and, if asked, enabled) element the rendered locator matches, in order."""
    return driver.execute_script(_FIND_JS, spec_of(locator, enabled=enabled)) or []


def find_first(driver: WebDriver, locator: Locator) -> WebElement | None:
    """The first match, or None."""
    found = find_all(driver, locator)
    return found[0] if found else None


def first_shown(driver: WebDriver, candidates: list[Locator]) -> int | None:
    """The index of the first locator that matches anything on the page, in one round trip."""
    index = driver.execute_script(_FIRST_SHOWN_JS, [spec_of(c) for c in candidates])
    return None if index is None or index < 0 else int(index)


def probe_page(
    driver: WebDriver, *, with_text: bool = False, marker: Locator | None = None
) -> dict[str, Any]:
    """The page's url, title, headings and alerts, its whole text if asked, and whether the
    `marker` locator (e.g. the sign-in form's password field) matches anything."""
    spec = spec_of(marker) if marker else None
    return driver.execute_script(_PROBE_JS, with_text, spec) or {}

"""Find elements the way a person does: by label, button text, link text, ARIA role and name.

All semantic matching runs in one injected script per lookup, so a lookup costs a single
WebDriver round trip however many candidates the page has. Only visible elements match (a
person cannot use what they cannot see), except that a labelled file input, which portals
often hide behind a styled button, is found even when hidden.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement

from shared.sop.model import Locator

# Function definitions shared by the finder and the page probe.
_LIB_JS = r"""
const squash = s => (s || '').replace(/\s+/g, ' ').trim();
const norm = s => squash(s).toLowerCase();
// Labels often carry a trailing colon or a required-field star.
const clean = s => norm(s).replace(/[\s:*]+$/, '').trim();
const cleanCased = s => squash(s).replace(/[\s:*]+$/, '').trim();
const isDoc = n => n.nodeType === 9;
const docOf = n => (isDoc(n) ? n : n.ownerDocument);
// An id is looked up in the element's own tree: the document, or the shadow root it is in.
function byId(el, id) {
  const r = el.getRootNode();
  return r.getElementById ? r.getElementById(id) : docOf(el).getElementById(id);
}
const txt = el => (el.innerText !== undefined ? el.innerText : el.textContent) || '';
// Every match of a selector under root, open shadow roots included (light DOM first).
function deepAll(root, sel) {
  const out = Array.from(root.querySelectorAll(sel));
  for (const host of shadowHosts(root)) out.push(...deepAll(host.shadowRoot, sel));
  return out;
}
// The elements under root (in its own tree) that have an open shadow root, in order. Each
// deepAll asks, several times a look: the answer is kept for the look (this script runs whole
// each time, and the page cannot change while it runs), and a walk costs a quarter of listing
// every element (querySelectorAll('*'): 180 ms on a page of 200,000 rows).
const HOSTS = new Map();
function shadowHosts(root) {
  if (HOSTS.has(root)) return HOSTS.get(root);
  const hosts = [], walk = docOf(root).createTreeWalker(root, NodeFilter.SHOW_ELEMENT);
  while (walk.nextNode()) if (walk.currentNode.shadowRoot) hosts.push(walk.currentNode);
  HOSTS.set(root, hosts);
  return hosts;
}
// The open shadow roots under root, nested ones included, in the order deepAll searches them.
function shadowRoots(root) {
  const out = [];
  for (const host of shadowHosts(root)) out.push(host.shadowRoot, ...shadowRoots(host.shadowRoot));
  return out;
}
// Whether el is root or under it, crossing shadow boundaries.
function inside(root, el) {
  for (let n = el; n; n = n.parentNode || n.host) if (n === root) return true;
  return false;
}
function visible(el) {
  if (!el.isConnected) return false;
  const st = docOf(el).defaultView.getComputedStyle(el);
  if (st.visibility === 'hidden' || st.display === 'none') return false;
  return el.getClientRects().length > 0;
}
// A label's text as a person reads it: an image inside counts by its alt text.
function labelText(lab) {
  if (!lab.querySelector('select, textarea, input, img[alt]')) return txt(lab);
  const copy = lab.cloneNode(true);
  copy.querySelectorAll('select, textarea, input').forEach(c => c.remove());
  copy.querySelectorAll('img[alt]').forEach(i => i.replaceWith(' ' + i.getAttribute('alt') + ' '));
  return copy.textContent;
}
function refText(el, attr) {
  return (el.getAttribute(attr) || '').split(/\s+/).filter(Boolean).map(id => byId(el, id))
    .filter(Boolean).map(txt).join(' ');
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
function matcher(want, mode, cased) {
  const tidy = cased ? cleanCased : clean;
  const w = tidy(want);
  return mode === 'contains' ? (s => tidy(s).includes(w)) : (s => tidy(s) === w);
}
function within(root, els) {
  return isDoc(root) ? els : els.filter(e => e !== root && inside(root, e));
}
function byLabel(root, eq) {
  const doc = docOf(root);
  const out = [];
  for (const lab of deepAll(doc, 'label'))
    if (lab.control && eq(labelText(lab))) out.push(lab.control);
  for (const el of deepAll(doc, '[aria-label]'))
    if (eq(el.getAttribute('aria-label'))) out.push(el);
  for (const el of deepAll(doc, '[aria-labelledby]'))
    if (eq(refText(el, 'aria-labelledby'))) out.push(el);
  for (const el of deepAll(doc, '[placeholder]'))
    if (eq(el.getAttribute('placeholder'))) out.push(el);
  // A form control named only by its tooltip.
  for (const el of deepAll(doc, 'input[title], select[title], textarea[title]'))
    if (eq(el.getAttribute('title'))) out.push(el);
  return within(root, out);
}
// The innermost elements under root whose text matches (a page's <body> also "contains" it),
// in deepAll's order: root's own tree first, then each open shadow root's. Yielded one by one,
// so a look that wants only the first stops walking there. A hit is innermost in its own tree
// (textHits); it is not when a shadow root under it (its host is the hit or in it) has one.
function* byText(root, want, mode, cased) {
  const base = isDoc(root) ? root.body : root;
  if (!base) return;
  const eq = matcher(want, mode, cased), key = letters(clean(want));
  const trees = [base, ...shadowRoots(base)];
  const shadows = trees.slice(1).filter(tree => !textHits(tree, eq, key).next().done);
  for (const tree of trees) {
    for (const el of textHits(tree, eq, key))
      if (!shadows.some(other => other !== tree && inside(el, other.host))) yield el;
  }
}
// Elements whose text is not what a person reads.
const NOT_TEXT = /^(SCRIPT|STYLE|NOSCRIPT|TEMPLATE)$/;
// A text's letters: what its raw form (textContent) and its laid-out form (innerText) share.
const letters = s => (s || '').toLowerCase().replace(/\s+/g, '');
// Yields, in document order, the innermost elements under root in its own tree whose
// text matches (`eq`). Reading an element's text lays it out, and took seconds a look on a page
// of 100,000s of elements when every element's was read: the walk goes down only into elements
// whose raw text has the wanted letters (`key`: no layout, and an element's text holds its
// children's), and reads an element's text only when nothing under it matched (an element
// with a match under it is not innermost). So an element whose text has the wanted text only
// as laid out (a hidden part in the middle of it) is not found. Post-order, on a stack of its
// own: no depth of nesting overflows the script's.
function* textHits(root, eq, key) {
  const stack = [{el: root, i: 0, below: false}];
  while (stack.length) {
    const top = stack[stack.length - 1], kids = top.el.children;
    let next = null;  // the next child worth going into: one at a time, so a first hit ends it
    while (!next && top.i < kids.length) {
      const c = kids[top.i++];
      if (!NOT_TEXT.test(c.tagName) && letters(c.textContent).includes(key)) next = c;
    }
    if (next) {
      stack.push({el: next, i: 0, below: false});
      continue;
    }
    stack.pop();
    const hit = !top.below && top.el !== root && eq(txt(top.el));
    if (hit) yield top.el;
    if ((hit || top.below) && stack.length) stack[stack.length - 1].below = true;
  }
}
// The matches of spec under root, in document order: the first `limit` of them (all when it
// is not given), or with spec.nth the nth.
function search(spec, root, limit) {
  if (spec.within) {
    const outer = search(spec.within, root, 1);
    if (!outer.length) return [];
    root = outer[0];
  }
  const mode = spec.match || (spec.kind === 'text' ? 'contains' : 'exact');
  const eq = matcher(spec.kind === 'role' ? (spec.name || '') : spec.value, mode,
                     spec.case === 'sensitive');
  const q = sel => deepAll(root, sel);
  let found;
  switch (spec.kind) {
    case 'css': found = q(spec.value); break;
    case 'xpath': {
      const snap = docOf(root).evaluate(spec.value, root, null,
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
    case 'text': found = byText(root, spec.value, mode, spec.case === 'sensitive'); break;
    default: found = [];
  }
  const shown = usable(found, spec, spec.nth || limit || Infinity);
  return spec.nth ? shown.slice(spec.nth - 1, spec.nth) : shown;
}
// The first `limit` of `found` (a list, or a text look's hits as they are found) that are
// visible (and, if asked, enabled), each once, in order; a labelled file input counts hidden
// when none of `found` is visible. It stops at the limit: a text that every row of a page of
// 200,000 rows has matches each row, and reading, checking and sending each took seconds a
// look when the caller wanted only the first.
function usable(found, spec, limit) {
  const enabled = el => !spec.enabled ||
    (!el.disabled && el.getAttribute('aria-disabled') !== 'true');
  const out = [], met = new Set();
  let seen = false;
  for (const el of found) {
    if (out.length >= limit) break;
    if (met.has(el)) continue;
    met.add(el);
    if (!visible(el)) continue;
    seen = true;
    if (enabled(el)) out.push(el);
  }
  if (seen || spec.kind !== 'label') return out;  // else `met` holds every match
  return Array.from(met).filter(el => el.tagName === 'INPUT' && el.type === 'file' &&
    enabled(el)).slice(0, limit);
}
// The matches in this document (the first `limit`), or else {frame} naming the first
// same-origin frame that has some (the caller switches into it and asks again), or none.
function searchFrames(spec, limit) {
  const hits = search(spec, document, limit);
  if (hits.length) return hits;
  for (const frame of deepAll(document, 'iframe, frame')) {
    let doc = null;
    try { doc = frame.contentDocument; } catch (e) { /* another origin: not ours to read */ }
    if (doc && doc.body && visible(frame) && search(spec, doc, 1).length) return {frame};
  }
  return [];
}
"""

_FIND_JS = _LIB_JS + "return searchFrames(arguments[0], arguments[1]);"
# The top page, even when the last look-up left the driver inside one of its frames.
_TOP_JS = (
    "const top = (() => { try { return window.top.document; } "
    "catch (e) { return document; } })();\n"
)
_FIRST_SHOWN_JS = (
    _LIB_JS + _TOP_JS + "return arguments[0].findIndex(spec => search(spec, top, 1).length > 0);"
)

# Reads what a person glances at to tell an error page or the sign-in page.
_PROBE_FN_JS = r"""
function probe(text, markers) {
  const flat = el => txt(el).replace(/\s+/g, ' ').trim();
  const heads = deepAll(top, 'h1, h2, h3, [role=alert], [role=heading]').map(flat)
    .filter(Boolean);
  // The HTTP status the page's document was answered with (0 when the browser does not say).
  const nav = performance.getEntriesByType('navigation')[0];
  const [textId, textRead] = text ? pageText(text[0], text[1]) : ['', null];
  // On the browser's own error page, the network error it names (ERR_TOO_MANY_REDIRECTS).
  const failed = top.location.protocol === 'chrome-error:' && top.querySelector('.error-code');
  return {
    url: top.location.href,
    referrer: top.referrer || '',
    title: top.title || '',
    headings: heads.join('\n'),
    text: textRead,
    text_id: textId,
    markers: markers.map(spec => search(spec, top, 1).length > 0),
    status: nav && nav.responseStatus ? nav.responseStatus : 0,
    error: failed ? failed.textContent.trim() : '',
  };
}
// The page's text (its first `max` characters): [the id of this read, the text], or [id, null]
// when the read the caller holds (`known`) still stands: one read lays out all of a page's
// text, so it is done again only when the document changed since (a MutationObserver tells),
// and then at most every 500 ms.
function pageText(known, max) {
  // Kept on the document: the next document (even in the same window) starts afresh.
  let seen = top.__understudyText;
  if (!seen) {
    seen = {id: '', dirty: true, at: 0};
    try { Object.defineProperty(top, '__understudyText', {value: seen}); } catch (e) { /**/ }
    if (top.__understudyText === seen)
      new MutationObserver(() => { seen.dirty = true; }).observe(top,
        {subtree: true, childList: true, characterData: true, attributes: true});
  }
  const now = Date.now();
  if (known && known === seen.id && (!seen.dirty || now - seen.at < 500)) return [seen.id, null];
  Object.assign(seen, {id: `${now}-${Math.random()}`, dirty: false, at: now});
  return [seen.id, top.body ? squash(txt(top.body).slice(0, max)) : ''];
}
"""
_PROBE_JS = _LIB_JS + _TOP_JS + _PROBE_FN_JS + "return probe(arguments[0], arguments[1]);"
# A look-up and the page probe in one round trip.
_FIND_AND_PROBE_JS = (
    _LIB_JS
    + _TOP_JS
    + _PROBE_FN_JS
    + "return [searchFrames(arguments[0], arguments[3]), probe(arguments[1], arguments[2])];"
)

# What a probe asks of the page's text: (the id of the read the caller holds, or "", the most
# characters to read). The probe answers ``text_id`` and ``text``: a new read, or None when the
# caller's read still holds (the document did not change since).
PageText = tuple[str, int]

# A look-up that finds its element in a frame leaves the driver in that frame (its elements
# can be used only from there); the next look-up starts from the top page again.
_MAX_FRAME_DEPTH = 3
# The drivers a look-up left inside a frame.
_IN_FRAME: weakref.WeakSet[WebDriver] = weakref.WeakSet()


def spec_of(locator: Locator, *, enabled: bool = False) -> dict[str, Any]:
    """The JSON shape the finder script takes."""
    return {
        "enabled": enabled,
        "kind": locator.kind,
        "value": locator.value,
        "name": locator.name,
        "nth": locator.nth,
        "match": locator.match,
        "case": locator.case,
        "within": spec_of(locator.within) if locator.within else None,
    }


def find_all(
    driver: WebDriver, locator: Locator, *, enabled: bool = False, limit: int | None = None
) -> list[WebElement]:
    """Every visible (and, if asked, enabled) element the rendered locator matches, in order,
    or only the first ``limit`` of them: the page stops looking there, and sends only those.

    Open shadow roots are searched as part of the page. When the page itself has no match, the
    first same-origin frame that has one is searched, and the driver is left in that frame.
    """
    spec = spec_of(locator, enabled=enabled)
    to_top_page(driver)
    return _into_frames(driver, spec, limit, driver.execute_script(_FIND_JS, spec, limit))


def _into_frames(
    driver: WebDriver, spec: dict[str, Any], limit: int | None, found: Any
) -> list[WebElement]:
    """The matches a look-up returned, or, when it named a frame that has some, the matches
    in that frame (the driver is left in it)."""
    for _ in range(_MAX_FRAME_DEPTH):
        if not isinstance(found, dict):
            break
        driver.switch_to.frame(found["frame"])
        _IN_FRAME.add(driver)
        found = driver.execute_script(_FIND_JS, spec, limit)
    return found if isinstance(found, list) else []


def find_all_and_probe(
    driver: WebDriver,
    locator: Locator,
    *,
    enabled: bool = False,
    limit: int | None = None,
    text: PageText | None = None,
    markers: Sequence[Locator] = (),
) -> tuple[list[WebElement], dict[str, Any] | None]:
    """:func:`find_all` and :func:`probe_page` in one round trip (one more per frame entered)."""
    spec = spec_of(locator, enabled=enabled)
    to_top_page(driver)
    specs = [spec_of(marker) for marker in markers]
    answer = driver.execute_script(_FIND_AND_PROBE_JS, spec, text, specs, limit)
    found, info = answer or ([], None)
    return _into_frames(driver, spec, limit, found), _facts(info) if info is not None else None


def to_top_page(driver: WebDriver) -> None:
    """Point the driver at the top page again, if a look-up left it inside a frame."""
    if driver in _IN_FRAME:  # only then is the round trip needed
        driver.switch_to.default_content()
        _IN_FRAME.discard(driver)


def find_first(driver: WebDriver, locator: Locator) -> WebElement | None:
    """The first match (:func:`find_all`'s first), or None; the page sends only that one."""
    found = find_all(driver, locator, limit=1)
    return found[0] if found else None


def first_shown(driver: WebDriver, candidates: list[Locator]) -> int | None:
    """The index of the first locator that matches anything on the page, in one round trip."""
    index = driver.execute_script(_FIRST_SHOWN_JS, [spec_of(c) for c in candidates])
    return None if index is None or index < 0 else int(index)


def probe_page(
    driver: WebDriver, *, text: PageText | None = None, markers: Sequence[Locator] = ()
) -> dict[str, Any]:
    """The page's url, referrer, title, headings and alerts, its text if asked (``text``, and
    ``text_id``: see :data:`PageText`), the HTTP status of its document (``status``, 0 if
    unknown), the network error that the browser's error page names (``error``:
    ``ERR_CONNECTION_REFUSED``), and for each of ``markers`` whether it matches anything
    (``markers``, e.g. the sign-in page's heading), in one round trip."""
    specs = [spec_of(marker) for marker in markers]
    return _facts(driver.execute_script(_PROBE_JS, text, specs))


def _facts(info: Any) -> dict[str, Any]:
    """The probe's answer in the types its readers expect. The probe reads what a page's own
    script can replace (``performance``, ``document.title``) with values of any type."""
    if not isinstance(info, dict):
        return {}
    out: dict[str, Any] = {
        key: str(info.get(key) or "")
        for key in ("url", "referrer", "title", "headings", "text_id", "error")
    }
    text = info.get("text")
    out["text"] = None if text is None else str(text)
    markers = info.get("markers")
    out["markers"] = [bool(m) for m in markers] if isinstance(markers, list) else []
    status = info.get("status")
    out["status"] = status if isinstance(status, int) and 0 <= status < 1000 else 0
    return out

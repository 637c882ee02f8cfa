// The REST API as the GUI calls it: relative URLs (so a base path in front of the server
// works), the session cookie, the CSRF token of the login on every mutating call, JSON
// both ways, and one place that turns a 401 into "sign in again".

const CSRF_KEY = 'palisade.csrf';
const USER_KEY = 'palisade.user';
const LOGIN_PATH = 'v2/public/user/login';

/** An answer that was not a 2xx: the API's stable `code` and human `message`. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

let onUnauthenticated = () => {};

/** What to do when any call answers 401 (the app returns to the sign-in page); `f` is
 * told whether this tab had signed in (its session ended) or not (a first visit). */
export function setOnUnauthenticated(f) {
  onUnauthenticated = f;
}

/** The API's root: the directory above `ui/`. */
function apiBase() {
  return new URL('../', document.baseURI);
}

/** Call the API: `path` is relative to the API root (`v2/clouds`). */
export async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (method !== 'GET') {
    const token = sessionStorage.getItem(CSRF_KEY);
    if (token) headers['X-CSRF-Token'] = token;
  }
  let res;
  try {
    res = await fetch(new URL(path, apiBase()), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch (e) {
    throw new ApiError(0, 'network', 'the server cannot be reached');
  }
  const text = await res.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch (e) {
      data = null;
    }
  }
  if (res.status === 401 && path !== LOGIN_PATH) {
    const hadSession = Boolean(currentUser());
    forget();
    onUnauthenticated(hadSession);
  }
  if (!res.ok) {
    const code = (data && data.code) || `http_${res.status}`;
    const message = (data && data.message) || res.statusText || 'request failed';
    throw new ApiError(res.status, code, message);
  }
  return data;
}

export const get = (path) => api('GET', path);
export const post = (path, body) => api('POST', path, body);

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/** Path segment, escaped. */
export const seg = (s) => encodeURIComponent(s);

/** Sign in; keeps the CSRF token and who signed in for this tab. */
export async function login(username, password) {
  const r = await api('POST', LOGIN_PATH, { username, password });
  sessionStorage.setItem(CSRF_KEY, r.csrf_token);
  sessionStorage.setItem(USER_KEY, JSON.stringify({ user: r.user, role: r.role }));
  return r;
}

/** Sign out (the server ends the session) and forget the tab's session state. */
export async function logout() {
  try {
    await api('POST', 'v2/user/logout');
  } finally {
    forget();
  }
}

/** Who signed in (as remembered by this tab), or null. */
export function currentUser() {
  try {
    return JSON.parse(sessionStorage.getItem(USER_KEY) || 'null');
  } catch (e) {
    return null;
  }
}

/** Ask the server who the session is, for a tab that has the cookie but no memory. */
export async function whoami() {
  const me = await get('v2/user/me');
  sessionStorage.setItem(USER_KEY, JSON.stringify({ user: me.user, role: me.role }));
  return me;
}

/** Whether this tab can make changes (it holds the session's CSRF token). */
export const canWrite = () => Boolean(sessionStorage.getItem(CSRF_KEY));

export function forget() {
  sessionStorage.removeItem(CSRF_KEY);
  sessionStorage.removeItem(USER_KEY);
}

const RANK = { viewer: 0, operator: 1, admin: 2 };
/** Whether the signed-in user has at least `role`. */
export function hasRole(role) {
  const u = currentUser();
  return Boolean(u) && (RANK[u.role] ?? -1) >= RANK[role];
}

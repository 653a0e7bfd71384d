import { readFile } from 'node:fs/promises';
import { normalize, resolve, sep } from 'node:path';
import { contentType } from '../core/runtime/content-type.js';

/** The scheme the window loads the GUI from: only the built renderer's files, nothing else on disk. */
export const GUI_SCHEME = 'cp-admin';
export const GUI_ORIGIN = `${GUI_SCHEME}://gui`;
export const GUI_URL = `${GUI_ORIGIN}/index.html`;

/**
 * The window's Content-Security-Policy: our own scripts and styles only, no network at all
 * (the admin API comes over IPC), no frames, no forms posting anywhere. Inline style
 * attributes are allowed for the virtual list's row positions.
 */
export const GUI_CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "style-src-attr 'unsafe-inline'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
  "object-src 'none'",
].join('; ');

/** Answers one request of the GUI scheme from `dir`; anything outside it is a 404. */
export async function serveGuiFile(dir: string, url: string): Promise<Response> {
  const u = new URL(url);
  if (u.host !== 'gui') return new Response('not found', { status: 404 });
  let path: string;
  try {
    path = decodeURIComponent(u.pathname === '/' ? '/index.html' : u.pathname);
  } catch {
    return new Response('bad path', { status: 400 }); // not valid percent-encoding (the admin endpoint answers the same)
  }
  const rel = normalize(path).replace(/^([/\\])+/, '');
  const root = resolve(dir);
  const file = resolve(root, rel);
  if (!file.startsWith(root + sep)) return new Response('not found', { status: 404 });
  try {
    const body = await readFile(file);
    return new Response(body, {
      headers: { 'content-type': contentType(file), 'content-security-policy': GUI_CSP, 'x-content-type-options': 'nosniff' },
    });
  } catch {
    return new Response('not found', { status: 404 });
  }
}

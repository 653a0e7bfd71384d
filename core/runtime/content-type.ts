import { extname } from 'node:path';

/** Content types of the files the GUI build has (renderer/dist), by extension. */
const CONTENT_TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.map': 'application/json',
  '.woff2': 'font/woff2',
};

/**
 * The Content-Type to serve a file of the built GUI with; anything else is a plain download
 * (`application/octet-stream`, never sniffed: both servers send `nosniff`). One table for the
 * admin endpoint (core/admin/server.ts) and the desktop window's scheme (electron/gui-files.ts).
 */
export function contentType(file: string): string {
  return CONTENT_TYPES[extname(file)] ?? 'application/octet-stream';
}

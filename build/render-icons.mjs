// Renders the app and tray icons (assets/*.png) from SVG in Debian's Chromium. Run by hand
// after changing assets/icon.svg: `node build/render-icons.mjs` (the PNGs are committed).
import { readFile, writeFile } from 'node:fs/promises';
import { chromium } from 'playwright-core';

const root = new URL('../', import.meta.url);
const icon = await readFile(new URL('assets/icon.svg', root), 'utf8');
const tray = (color) => `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">
  <path d="M6 23 C 12 23, 13 10, 21 10" fill="none" stroke="#5b6675" stroke-width="3.2" stroke-linecap="round"/>
  <circle cx="6.5" cy="23" r="4.2" fill="#5b6675"/>
  <circle cx="24" cy="10" r="6.5" fill="${color}" stroke="#ffffff" stroke-width="1.5"/>
</svg>`;
const jobs = [
  ['assets/icon.png', icon, 512],
  ['assets/tray-connected.png', tray('#1a7f37'), 32],
  ['assets/tray-reconnecting.png', tray('#d29922'), 32],
  ['assets/tray-offline.png', tray('#c62828'), 32],
];
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'] });
for (const [out, svg, size] of jobs) {
  const page = await browser.newPage({ viewport: { width: size, height: size } });
  const sized = svg.replace('<svg ', `<svg width="${size}" height="${size}" `);
  await page.setContent(`<html><body style="margin:0;background:transparent">${sized}</body></html>`);
  await writeFile(new URL(out, root), await page.screenshot({ omitBackground: true, clip: { x: 0, y: 0, width: size, height: size } }));
  await page.close();
}
await browser.close();
console.log(jobs.map((j) => j[0]).join('\n'));

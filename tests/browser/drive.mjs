// Runs the browser softphone for the registrar's WebSocket test (registrar/tests/browser_phone.rs):
// Debian's chromium, headless, driven by playwright-core (no browser download), loading
// phone.html from a local HTTP server (so the page has a real origin), with JsSIP bundled from
// npm by esbuild.
//
//   node drive.mjs '{"url":"wss://127.0.0.1:5443","user":"1001","password":"…",
//                    "domain":"switchboard.local","pagePort":8088}'
//
// Commands on stdin, one a line: `call NUMBER`, `hangup`, `unregister`, `quit`.
// On stdout, one JSON object a line: the phone's events ({"event":"registered"}, …), and every
// WebSocket frame the page sends or receives ({"event":"sent"|"received","line":FIRST LINE,
// "cseq":CSEQ}), so the test can assert the SIP exchange itself.
import { chromium } from 'playwright-core';
import { build } from 'esbuild';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const cfg = JSON.parse(process.argv[2]);
const out = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');

const bundle = await build({
  entryPoints: [path.join(here, 'node_modules/jssip/lib/JsSIP.js')],
  bundle: true,
  format: 'iife',
  globalName: 'JsSIP',
  write: false,
  logLevel: 'error',
});
const files = {
  '/': ['text/html', fs.readFileSync(path.join(here, 'phone.html'))],
  '/phone.js': ['text/javascript', fs.readFileSync(path.join(here, 'phone.js'))],
  '/jssip.js': ['text/javascript', bundle.outputFiles[0].contents],
};
const server = http.createServer((req, res) => {
  const file = files[req.url];
  if (!file) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'Content-Type': file[0] }).end(file[1]);
});
await new Promise((resolve) => server.listen(cfg.pagePort, '127.0.0.1', resolve));

// Debian's chromium; $CHROMIUM, or a Chrome already on the machine (GitHub's Ubuntu runners).
const executablePath =
  process.env.CHROMIUM ||
  ['/usr/bin/chromium', '/usr/bin/google-chrome'].find((p) => fs.existsSync(p)) ||
  '/usr/bin/chromium';
const browser = await chromium.launch({
  executablePath,
  args: [
    // The registrar's test certificate is self-signed for this test.
    '--ignore-certificate-errors',
    '--use-fake-ui-for-media-stream',
    '--use-fake-device-for-media-stream',
    // Root in CI: chromium's sandbox needs an unprivileged user.
    '--no-sandbox',
  ],
});
const page = await browser.newPage({ ignoreHTTPSErrors: true });
page.on('console', (m) => process.stderr.write(`page ${m.type()}: ${m.text()}\n`));
page.on('pageerror', (e) => out({ event: 'pageerror', message: String(e) }));
page.on('websocket', (ws) => {
  const frame = (event) => (f) => {
    const text = String(f.payload);
    const cseq = /^CSeq:\s*(.*)$/im.exec(text);
    out({ event, line: text.split('\r\n')[0], cseq: cseq ? cseq[1].trim() : null });
  };
  ws.on('framesent', frame('sent'));
  ws.on('framereceived', frame('received'));
  ws.on('close', () => out({ event: 'socketclosed' }));
});
await page.exposeFunction('emit', (e) => out(e));
await page.goto(`http://127.0.0.1:${cfg.pagePort}/`);
await page.evaluate((c) => window.phone.start(c), cfg);

const commands = {
  call: (n) => page.evaluate((x) => window.phone.call(x), n),
  hangup: () => page.evaluate(() => window.phone.hangup()),
  unregister: () => page.evaluate(() => window.phone.unregister()),
};
for await (const line of readline.createInterface({ input: process.stdin })) {
  const [name, ...rest] = line.trim().split(/\s+/);
  if (!name) continue;
  if (name === 'quit') break;
  const run = commands[name];
  if (!run) {
    out({ event: 'error', message: `unknown command ${name}` });
    continue;
  }
  await run(rest.join(' ')).catch((e) => out({ event: 'error', message: String(e) }));
}
await browser.close();
server.closeAllConnections();
server.close();
out({ event: 'quit' });
// stdin (still open for the reader) would keep node running.
process.exit(0);

import { startServer, launchBrowser, startDemoUser, demoState, sleep } from './lib/harness.mjs';
const srv = await startServer('dbg');
const A = await launchBrowser('dbg-a'), B = await launchBrowser('dbg-b');
const pa = await A.newPage(srv.url + '/demo'), pb = await B.newPage(srv.url + '/demo');
for (const p of [pa,pb]) p.on('console', m => console.log(m.type(), m.text()));
pa.on('requestfailed', r => console.log('failed', r.url()));
pa.on('response', r => { if (r.status() >= 400) console.log('HTTP', r.status(), r.url()); });
const [ua, ub] = await Promise.all([
  startDemoUser(pa, { name: 'Alice', age: 31, interests: 'hiking, jazz', minAge: 25, maxAge: 40 }),
  startDemoUser(pb, { name: 'Bob', age: 33, interests: 'jazz', minAge: 25, maxAge: 40 }),
]);
console.log(ua, ub);
await sleep(4000);
console.log(await demoState(pa), await demoState(pb));
console.log(await pa.evaluate(() => window.__demo.events));
console.log((await srv.api('GET', '/v1/sessions?kind=call')).body);
await A.close(); await B.close(); await srv.stop();

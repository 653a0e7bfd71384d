import { describe, expect, it } from 'vitest';
import { PeerDetailPage } from './pages/peer-detail-page.js';
import { PeersPage } from './pages/peers-page.js';
import { guiSuite } from './support/gui-suite.js';
import { Stack } from './support/stack.js';

/**
 * Access rules and the content check in Chromium (issue 15), against a real relay process,
 * contact point and peer processes: the office default and the check set in Settings, a peer's
 * own rules on its page, and the refusals they caused, as the sender saw them.
 */
const suite = guiSuite();

describe('access rules in Chromium', { timeout: 60_000 }, () => {
  it('sets the office default and the content check in Settings, a peer\'s own rules on its page, and shows the refusals they caused', async () => {
    const stack = (suite.stack = await Stack.start({ externals: ['alice', 'tech'] }));
    const { page, app } = await suite.open(stack);
    const detail = new PeerDetailPage(page);

    const printer = await stack.internalPeer('printer');
    printer.send({ cmd: 'register' });
    await new PeersPage(page).openTab('pending');
    await stack.cp.call('peers:approve', { name: 'printer' });
    await printer.waitFor((e) => e.event === 'registration' && e.state === 'registered', 'printer registered');

    // Settings: only tech may message a peer without rules of its own; JSON at most 4 deep.
    await app.go('Settings');
    const office = page.getByRole('form', { name: 'Office default access rules' });
    await office.getByLabel('Only these senders').check();
    await office.getByLabel('Allowed senders').fill('tech@relay\n*@branch');
    await office.getByLabel('Largest message (bytes)').fill('65536');
    await office.getByRole('button', { name: 'Save rules' }).click();
    await app.notice('Office default access rules saved').waitFor();
    await page.getByLabel('Check', { exact: true }).selectOption('json-depth');
    await page.getByLabel('Deepest nesting allowed').fill('4');
    await page.getByRole('button', { name: 'Save check' }).click();
    await app.notice('Content check saved').waitFor();
    expect(await page.getByTestId('check-now').textContent()).toBe('built-in: JSON nested at most 4 levels');
    await app.dismissNotices();
    await page.getByRole('heading', { name: 'Access rules: office default' }).scrollIntoViewIfNeeded();
    await app.screenshot('settings-rules');
    // A bad value from the form: the contact point's refusal, shown where it was typed; nothing changed.
    await office.getByLabel('Allowed senders').fill('no at sign');
    await office.getByRole('button', { name: 'Save rules' }).click();
    expect(await office.getByRole('alert').textContent()).toContain('must be *, or name@domain');
    expect(stack.cp.rules.view().office).toEqual({ allow: ['tech@relay', '*@branch'], maxBytes: 65536 });

    // What the senders see.
    // Plain: the content check reads the payload, and a sealed one is opaque to it.
    const alice = await stack.externalPeer('alice', 'off');
    const tech = await stack.externalPeer('tech', 'off');
    expect(await stack.send(alice, 'printer@acme-hq', 'hello')).toMatchObject({ event: 'refused', code: 24, reason: 'alice@relay may not message printer@acme-hq' });
    expect(await stack.send(tech, 'printer@acme-hq', '{"a":[1]}')).toMatchObject({ event: 'sent' });
    expect(await stack.send(tech, 'printer@acme-hq', '[[[[[[1]]]]]]')).toMatchObject({ event: 'refused', code: 25, reason: 'JSON nested deeper than 4 levels' });

    // The peer page: the rules that apply (the office default's), and what they refused.
    await app.go('Peers');
    await new PeersPage(page).openTab('registered');
    await detail.openFromTable('printer');
    const rules = page.getByTestId('peer-rules');
    expect(await rules.getByTestId('rules-senders').textContent()).toBe('only tech@relay, *@branch (office default)');
    await rules.getByTestId('rules-refusal-counts').filter({ hasText: '1 NOT_ALLOWED, 1 CONTENT_REFUSED' }).waitFor();

    // Its own rules: every external peer.
    await rules.getByRole('button', { name: 'Edit rules' }).click();
    const own = page.getByRole('form', { name: 'Access rules of printer' });
    await own.getByLabel('Only these senders').check();
    await own.getByLabel('Allowed senders').fill('*@relay');
    await own.getByLabel('Messages a minute').fill('120');
    await own.getByRole('button', { name: 'Save rules' }).click();
    await app.notice('Access rules of printer saved').waitFor();
    await rules.getByTestId('rules-senders').filter({ hasText: /^only \*@relay$/ }).waitFor();
    expect(stack.cp.rules.view().peers).toEqual([{ name: 'printer', allow: ['*@relay'], perMinute: 120 }]);
    expect(await stack.send(alice, 'printer@acme-hq', 'now I may')).toMatchObject({ event: 'sent' });
    expect(await stack.send(alice, 'printer@acme-hq', '[[[[[1]]]]]')).toMatchObject({ event: 'refused', code: 25 });
    await rules.getByTestId('rules-refusal-counts').filter({ hasText: '1 NOT_ALLOWED, 2 CONTENT_REFUSED' }).waitFor();
    const recent = rules.getByRole('table', { name: 'Refused by the rules' }).locator('tbody tr');
    expect(await recent.allTextContents()).toEqual([
      expect.stringContaining('alice@relayJSON nested deeper than 4 levels'),
      expect.stringContaining('tech@relayJSON nested deeper than 4 levels'),
      expect.stringContaining('alice@relayalice@relay may not message printer@acme-hq'),
    ]);
    // Audited as GUI, with the peer as the target.
    const audit = await stack.cp.call('audit:list', { target: 'printer' });
    expect(audit.entries.map((e) => [e.action, e.surface])).toContainEqual(['rules:set', 'gui']);
    await app.dismissNotices();
    await rules.scrollIntoViewIfNeeded();
    await app.screenshot('peer-rules');
  });
});

/**
 * What to do when this page has no admin token, or a wrong one (issue 16, item 10): the token
 * is drawn afresh each time the contact point starts, so an old bookmark or tab stops working.
 * The page then shows only this, not a dashboard of zeros that looks like real data.
 */
export function AdminUrlHelp({ title, detail }: { title: string; detail: string }) {
  return (
    <main className="fatal" role="alert" data-testid="admin-url-help">
      <h1>{title}</h1>
      <p>{detail}</p>
      <p>The admin GUI&apos;s address ends in a token (#token=…) that changes every time the contact point starts. Get the current address:</p>
      <ul>
        <li>
          the <code>admin GUI</code> line that <code>npm start</code> (or <code>contact-point start</code>) or <code>contact-point serve</code> printed where it
          runs;
        </li>
        <li>
          or <code>guiUrl</code> in <code>admin.json</code> in its state folder: <code>~/.contact-point/demo/admin.json</code> for <code>npm start</code>,{' '}
          <code>~/.contact-point/serve/admin.json</code> for <code>serve</code> (or the folder given with <code>--state</code>).
        </li>
      </ul>
    </main>
  );
}

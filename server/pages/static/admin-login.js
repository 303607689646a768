// The sign-in API takes JSON and sets the session cookie (HttpOnly, SameSite=Strict). Served as
// a file, not inline, so the pages' Content-Security-Policy can refuse every inline script.
document.getElementById('sign-in').addEventListener('submit', async (event) => {
  event.preventDefault();
  const form = event.target;
  const reply = await fetch(form.action, {
    method: 'POST',
    headers: {'content-type': 'application/json'},
    body: JSON.stringify({name: form.name.value, password: form.password.value}),
    credentials: 'same-origin',
  });
  if (reply.ok) { window.location.assign(form.dataset.next); return; }
  const problem = await reply.json().catch(() => ({}));
  const box = document.getElementById('sign-in-error');
  if (reply.status === 429 && problem.detail) { box.textContent = problem.detail; }
  box.hidden = false;
});

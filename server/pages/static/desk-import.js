// The import page's indicator: a form being sent (the upload and its dry run, the apply) shows
// its progress bar until the answer arrives, and its button cannot send it twice. Served as a
// file, not inline, so the pages' Content-Security-Policy can refuse every inline script.
document.querySelectorAll('form[data-working]').forEach((form) => {
  form.addEventListener('submit', () => {
    form.querySelector('progress').hidden = false;
    form.querySelectorAll('button[type=submit]').forEach((button) => { button.disabled = true; });
  });
});

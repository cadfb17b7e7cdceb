// Passkeys (WebAuthn): the only code that calls navigator.credentials. Without this script each
// passkey button posts its form, and the server answers with a page saying JavaScript is needed.
"use strict";

(() => {
  const supported = () =>
    typeof window.PublicKeyCredential === "function" && !!navigator.credentials;

  // The "Passkeys need JavaScript" notes are in the page, not in <noscript>, which stays hidden
  // when scripts are blocked by other means (extensions, policies). This script removes them, or
  // says that the browser itself cannot use passkeys.
  for (const note of document.querySelectorAll("[data-without-script]")) {
    if (supported()) note.hidden = true;
    else note.textContent = "This browser cannot use passkeys: use your password, or another browser.";
  }

  // The server sends binary values (challenge, ids) in base64url; the browser wants ArrayBuffers.
  const toBuffer = (text) => {
    const base64 = text.replace(/-/g, "+").replace(/_/g, "/");
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    return Uint8Array.from(binary, (c) => c.charCodeAt(0)).buffer;
  };
  const toText = (buffer) => {
    let binary = "";
    for (const byte of new Uint8Array(buffer)) binary += String.fromCharCode(byte);
    return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };
  const descriptors = (list) => (list || []).map((c) => ({ ...c, id: toBuffer(c.id) }));

  const creationOptions = (o) => ({
    ...o,
    challenge: toBuffer(o.challenge),
    user: { ...o.user, id: toBuffer(o.user.id) },
    excludeCredentials: descriptors(o.excludeCredentials),
  });
  const requestOptions = (o) => {
    const options = { ...o, challenge: toBuffer(o.challenge) };
    if (o.allowCredentials) options.allowCredentials = descriptors(o.allowCredentials);
    return options;
  };

  // PublicKeyCredential as JSON, the shape toJSON() gives where browsers have it.
  const asJSON = (credential) => {
    const r = credential.response;
    const response = { clientDataJSON: toText(r.clientDataJSON) };
    if (r.attestationObject) {
      response.attestationObject = toText(r.attestationObject);
      response.transports = typeof r.getTransports === "function" ? r.getTransports() : [];
    } else {
      response.authenticatorData = toText(r.authenticatorData);
      response.signature = toText(r.signature);
      if (r.userHandle) response.userHandle = toText(r.userHandle);
    }
    return {
      id: credential.id,
      rawId: toText(credential.rawId),
      type: credential.type,
      response,
      clientExtensionResults: credential.getClientExtensionResults(),
      authenticatorAttachment: credential.authenticatorAttachment || undefined,
    };
  };

  // Follow the server's answer; a page that only differs by its #fragment must still reload.
  const go = (url) => {
    const target = new URL(url, window.location.href);
    if (target.pathname === window.location.pathname && target.search === window.location.search) {
      window.history.replaceState(null, "", target.href);
      window.location.reload();
    } else {
      window.location.assign(target.href);
    }
  };

  const csrfToken = (form) => {
    const field = form.querySelector('input[name="csrf_token"]') || document.querySelector('input[name="csrf_token"]');
    return field ? field.value : "";
  };

  async function post(url, form, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json", "X-CSRF-Token": csrfToken(form) },
      body: JSON.stringify(body || {}),
    });
    let data;
    try {
      data = await response.json();
    } catch {
      data = { detail: "The server gave an unexpected answer. Reload the page and try again." };
    }
    if (!response.ok) {
      const error = new Error(data.detail || "Something went wrong. Reload the page and try again.");
      error.code = data.code;
      throw error;
    }
    return data;
  }

  const explain = (error) => {
    switch (error.name) {
      case "NotAllowedError":
        return "No passkey was used: the request was cancelled or timed out. Try again when you are ready.";
      case "InvalidStateError":
        return "This device already holds a passkey for your account.";
      case "SecurityError":
        return "Passkeys do not work at this address. Open the dashboard at its usual address and try again.";
      case "AbortError":
        return "The passkey request was interrupted. Try again.";
      default:
        return error.message || "Something went wrong with the passkey. Try again.";
    }
  };

  // One ceremony at a time per control: the button is disabled while the browser asks.
  function attach(control, form, run) {
    const status = document.getElementById(control.dataset.status || form.dataset.status || "");
    const say = (text, isError) => {
      if (!status) return;
      status.textContent = text;
      status.classList.toggle("is-error", !!isError);
    };
    const buttons = () => form.querySelectorAll("button");
    let busy = false;
    return async (event) => {
      if (event) event.preventDefault();
      if (busy) return;
      if (!supported()) {
        say("This browser cannot use passkeys. Use your password, or another browser.", true);
        return;
      }
      busy = true;
      for (const b of buttons()) b.disabled = true;
      say("Waiting for your passkey…", false);
      try {
        await run(say);
      } catch (error) {
        say(explain(error), true);
      } finally {
        busy = false;
        for (const b of buttons()) b.disabled = false;
      }
    };
  }

  // Sign in with a passkey alone (no email address): the browser offers the passkeys it holds.
  for (const form of document.querySelectorAll('form[data-passkey="sign-in"]')) {
    form.addEventListener("submit", attach(form, form, async () => {
      const ceremony = await post("/login/passkey/options", form);
      const credential = await navigator.credentials.get({ publicKey: requestOptions(ceremony.options) });
      const next = form.querySelector('input[name="next"]');
      const result = await post("/login/passkey", form, {
        challenge_id: ceremony.challenge_id,
        credential: asJSON(credential),
        next: next ? next.value : "",
      });
      go(result.redirect);
    }));
  }

  // Add a passkey. Without a recent sign-in the server refuses the options; then the form is
  // posted as it is, and the server asks for a password or passkey first and comes back here.
  for (const form of document.querySelectorAll('form[data-passkey="register"]')) {
    const start = attach(form, form, async (say) => {
      const name = form.querySelector('input[name="passkey_name"]');
      let ceremony;
      try {
        ceremony = await post("/dashboard/security/passkeys/options", form);
      } catch (error) {
        if (error.code !== "sudo_required") throw error;
        say("Confirm it is you first…", false);
        HTMLFormElement.prototype.submit.call(form);
        return;
      }
      const credential = await navigator.credentials.create({ publicKey: creationOptions(ceremony.options) });
      say("Saving the passkey…", false);
      const result = await post("/dashboard/security/passkeys", form, {
        challenge_id: ceremony.challenge_id,
        credential: asJSON(credential),
        name: name ? name.value : "",
      });
      go(result.redirect);
    });
    form.addEventListener("submit", start);
    if (form.hasAttribute("data-autostart")) start();
  }

  // The fresh sign-in page: prove it with a passkey, then send the form that carries the change.
  for (const button of document.querySelectorAll('button[data-passkey="sudo"]')) {
    const form = button.form;
    button.addEventListener("click", attach(button, form, async () => {
      const ceremony = await post("/dashboard/sudo/passkey/options", form);
      const credential = await navigator.credentials.get({ publicKey: requestOptions(ceremony.options) });
      await post("/dashboard/sudo/passkey", form, {
        challenge_id: ceremony.challenge_id,
        credential: asJSON(credential),
      });
      HTMLFormElement.prototype.submit.call(form);
    }));
  }
})();

// The demo storefront: plain JavaScript on the package's no-bundler entry.
import init, { CartClient, CartError } from "./pkg/web.js";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);

// The API lives beside the page. `?api=…` may name another origin only if the page allows it:
// one listed in <meta name="cartsync-api-origins">, or a loopback origin while the page itself is
// served from loopback (local development). Anything else is ignored, so a link cannot send the
// shopper's token to an origin of its choosing.
const isLoopback = (host) => host === "localhost" || host === "127.0.0.1" || host === "[::1]";
function apiOrigin() {
  const asked = params.get("api");
  if (!asked) return { api: location.origin };
  let url;
  try {
    url = new URL(asked);
  } catch {
    return { api: location.origin, refused: asked };
  }
  const listed = (document.querySelector('meta[name="cartsync-api-origins"]')?.content || "").split(/[\s,]+/).filter(Boolean);
  const ok =
    (url.protocol === "http:" || url.protocol === "https:") &&
    (url.origin === location.origin || listed.includes(url.origin) || (isLoopback(location.hostname) && isLoopback(url.hostname)));
  return ok ? { api: url.origin + url.pathname.replace(/\/$/, "") } : { api: location.origin, refused: asked };
}
const { api, refused } = apiOrigin();

/** An element with text children (never parsed as HTML) and attributes. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") el.className = v;
    else if (k.startsWith("data-")) el.dataset[k.slice(5).replace(/-(\w)/g, (_, c) => c.toUpperCase())] = v;
    else el.setAttribute(k, v);
  }
  el.append(...children.filter((c) => c !== null && c !== undefined && c !== false).map((c) => (c instanceof Node ? c : String(c))));
  return el;
}
const money = (m) => (m ? new Intl.NumberFormat("en-US", { style: "currency", currency: m.currency }).format(m.amount / 100) : "");

await init();
const cart = new CartClient({
  endpoint: api,
  storageKey: "cartsync-demo",
  // The server refused the shopper's token: the cart keeps every change and waits for a login.
  onUnauthorized: (e) => {
    toast(e.code === "cart_merged" ? "This cart moved to your account: log in again to keep editing it" : "Your session has ended: log in again", e.code);
    $("login-btn").hidden = $("user").hidden = false;
  },
});
window.cart = cart; // for the end-to-end tests and the curious
let products = [];

function toast(message, code) {
  const t = $("toast");
  t.textContent = code ? `${message} (${code})` : message;
  t.dataset.code = code || "";
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 6000);
}

// Every cart call may throw a CartError for bad input; show it rather than break the page.
function attempt(fn) {
  try {
    fn();
  } catch (e) {
    if (e instanceof CartError) toast(e.message, e.code);
    else throw e;
  }
}

function productName(sku) {
  return products.find((p) => p.sku === sku)?.name ?? sku;
}

// A product picture, drawn: a colour from the SKU and the product's initials (text nodes only).
const SVG = "http://www.w3.org/2000/svg";
function picture(sku, name, cls) {
  let hash = 0;
  for (const c of sku) hash = (hash * 31 + c.charCodeAt(0)) >>> 0;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 120 90");
  svg.setAttribute("class", cls);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", name);
  const bg = document.createElementNS(SVG, "rect");
  bg.setAttribute("width", "120");
  bg.setAttribute("height", "90");
  bg.setAttribute("fill", `hsl(${hash % 360} 55% 62%)`);
  const blob = document.createElementNS(SVG, "circle");
  blob.setAttribute("cx", String(30 + (hash % 60)));
  blob.setAttribute("cy", "45");
  blob.setAttribute("r", "28");
  blob.setAttribute("fill", `hsl(${(hash >> 8) % 360} 60% 80%)`);
  const text = document.createElementNS(SVG, "text");
  text.setAttribute("x", "60");
  text.setAttribute("y", "55");
  text.setAttribute("text-anchor", "middle");
  text.setAttribute("font-size", "28");
  text.setAttribute("font-family", "system-ui, sans-serif");
  text.setAttribute("fill", "#1d2330");
  text.textContent = name.split(/[^\p{L}\p{N}]+/u).map((w) => w[0] || "").join("").slice(0, 2).toUpperCase();
  svg.append(bg, blob, text);
  return svg;
}

function lineItem(line, kind) {
  const saved = kind === "saved";
  const li = h("li", { "data-sku": line.sku });
  const price = line.priceChanged
    ? h("span", { class: "price" }, h("s", {}, money(line.priceAtAdd)), " ", money(line.currentPrice))
    : h("span", { class: "price" }, money(line.currentPrice ?? line.priceAtAdd));
  const stock = line.availability && line.availability !== "in_stock" ? h("em", { class: `avail ${line.availability}` }, line.availability.replaceAll("_", " ")) : null;
  const off = kind === "cart" && line.discount && line.discount.amount > 0 ? h("span", { class: "line-discount", "data-testid": "line-discount" }, `−${money(line.discount)} → ${money(line.lineTotal)}`) : null;
  li.append(picture(line.sku, productName(line.sku), "line-thumb"), h("span", { class: "name" }, productName(line.sku)), " ", price, " ", off ?? "", " ", stock ?? "");
  if (line.priceChanged && line.currentPrice && line.priceAtAdd) {
    const up = line.currentPrice.amount > line.priceAtAdd.amount;
    li.append(h("span", { class: "notice", "data-testid": "price-notice" }, `Price ${up ? "went up" : "dropped"} from ${money(line.priceAtAdd)} to ${money(line.currentPrice)} since you added it`));
  }
  if (kind === "unavailable") {
    li.append(
      h("span", { class: "notice", "data-testid": "unavailable-reason" }, line.reason === "discontinued" ? "No longer sold" : "Out of stock: it comes back here when stock returns"),
      button("Save for later", "save", () => cart.saveForLater(line.sku)),
      button("Remove", "remove", () => cart.remove(line.sku)),
    );
  } else if (saved) {
    li.append(button("Move to cart", "move", () => cart.moveToCart(line.sku)), button("Remove", "remove-saved", () => cart.removeSaved(line.sku)));
  } else {
    const qty = document.createElement("input");
    qty.type = "number";
    qty.value = line.quantity;
    qty.dataset.testid = "qty";
    qty.setAttribute("aria-label", `quantity of ${line.sku}`);
    qty.addEventListener("change", () => attempt(() => cart.setQuantity(line.sku, Number(qty.value))));
    li.append(qty, button("Save for later", "save", () => cart.saveForLater(line.sku)), button("Remove", "remove", () => cart.remove(line.sku)));
  }
  return li;
}

function button(label, testid, onclick) {
  const b = document.createElement("button");
  b.type = "button";
  b.textContent = label;
  b.dataset.testid = testid;
  b.addEventListener("click", () => attempt(onclick));
  return b;
}

// Why a code takes nothing off, in words a shopper reads.
function reasonText(c) {
  if (c.pending) return "checking…";
  switch (c.reason) {
    case "min_subtotal_not_met": return `add ${money(c.missing)} more`;
    case "not_best": return "another offer saves you more";
    case "login_required": return "log in to use it";
    case "usage_limit_reached": return "no longer available";
    case "expired": return "expired";
    case "not_started": return "not started yet";
    case "inactive": return "not a valid code";
    default: return c.reason || "";
  }
}

function renderPromotions(s) {
  $("codes").replaceChildren(
    ...s.promoCodes.map((c) => {
      const li = h("li", { "data-code": c.code, class: c.applied ? "applied" : "not-applied" });
      if (c.applied) li.append(h("strong", {}, c.code), " applied");
      else li.append(h("strong", {}, c.code), " not applied: ", h("span", { "data-testid": "reason" }, reasonText(c)));
      li.append(button("×", "remove-code", () => cart.removePromoCode(c.code)));
      return li;
    }),
  );
  $("discounts").replaceChildren(
    ...s.discounts.map((d) => {
      const li = document.createElement("li");
      li.textContent = `${d.description || d.code || d.promotion}: −${money(d.amount)}`;
      return li;
    }),
  );
  $("total").textContent = money(s.total);
}

// What the first paint shows before the module has loaded (see the inline script of index.html):
// the last rendered cart, in the storefront's own key.
function rememberView(s) {
  const view = { count: s.itemCount, subtotal: money(s.subtotal), total: money(s.total), lines: s.lines.map((l) => [l.sku, productName(l.sku), l.quantity]) };
  try {
    localStorage.setItem("cartsync-demo-view", JSON.stringify(view));
  } catch {
    // A full storage only costs the first paint its cart.
  }
}

function render(s) {
  delete document.body.dataset.firstPaint;
  rememberView(s);
  $("count").textContent = s.itemCount;
  $("pending").textContent = `${s.pendingOps} pending${s.syncing ? " · syncing" : ""}`;
  $("pending").classList.toggle("warn", s.pendingOps > 0);
  $("who").textContent = s.owner === "user" ? `signed in (${localStorage.getItem("cartsync-demo-user") || "user"})` : "guest";
  $("login-btn").hidden = $("user").hidden = s.owner === "user";
  $("logout-btn").hidden = s.owner !== "user";
  $("subtotal").textContent = money(s.subtotal);
  // Keep a quantity being typed (and its focus) across re-renders caused by syncs and other tabs.
  const editing = document.activeElement?.closest?.("#lines li");
  const typed = editing && { sku: editing.dataset.sku, value: document.activeElement.value };
  $("lines").replaceChildren(...s.lines.map((l) => lineItem(l, "cart")));
  const unavailable = s.unavailable ?? [];
  $("unavailable").replaceChildren(...unavailable.map((l) => lineItem(l, "unavailable")));
  $("unavailable-section").hidden = unavailable.length === 0;
  if (typed) {
    const input = $("lines").querySelector(`li[data-sku="${CSS.escape(typed.sku)}"] input`);
    if (input) {
      input.value = typed.value;
      input.focus();
    }
  }
  $("saved").replaceChildren(...s.saved.map((l) => lineItem(l, "saved")));
  renderPromotions(s);
  if (s.lastError && s.lastError.code !== "network_error") toast(s.lastError.message, s.lastError.code);
}

function renderNetwork() {
  $("network").textContent = navigator.onLine ? "online" : "offline";
  $("network").classList.toggle("warn", !navigator.onLine);
}

async function loadProducts() {
  try {
    const res = await fetch(`${api}/v1/products`);
    products = (await res.json()).products ?? [];
    localStorage.setItem("cartsync-demo-products", JSON.stringify(products));
  } catch {
    products = JSON.parse(localStorage.getItem("cartsync-demo-products") || "[]"); // offline: the last list seen
  }
  $("grid").replaceChildren(
    ...products.map((p) => {
      const availability = String(p.availability ?? "unknown");
      const card = h(
        "article",
        { "data-sku": p.sku },
        picture(p.sku, p.name, "thumb"),
        h("h3", {}, p.name),
        h("p", { class: "price" }, money(p.price)),
        h("p", { class: `avail ${availability}` }, availability.replaceAll("_", " ")),
      );
      card.append(button("Add to cart", "add", () => cart.add(p.sku, 1, p.price)));
      return card;
    }),
  );
  $("admin-sku").replaceChildren(...products.map((p) => h("option", { value: p.sku }, `${p.name} (${p.sku})`)));
  render(cart.snapshot());
}

$("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const user = $("user").value.trim();
  if (!user) return toast("Enter a user name");
  try {
    const res = await fetch(`${api}/v1/dev/login`, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ user }) });
    if (!res.ok) throw new CartError("unauthorized", "development logins are off on this server");
    const { token } = await res.json();
    localStorage.setItem("cartsync-demo-user", user);
    const policy = await choosePolicy(token);
    if (policy === null) return;
    await cart.login(token, policy ? { policy } : undefined);
  } catch (err) {
    toast(err.message, err.code);
  }
});
// With a guest cart to bring along, the shopper sees what each merge would make of their carts
// and picks one; with nothing to bring, the account's cart is kept as it is (a server that asks
// the shopper, `prompt`, needs a policy named even then); `null`: they backed out.
async function choosePolicy(token) {
  const snap = cart.snapshot();
  if (snap.lines.length === 0 && snap.saved.length === 0) return "keep_user";
  let preview;
  try {
    preview = await cart.previewLogin(token);
  } catch (e) {
    toast(`Could not preview the merge: ${e.message}`, e.code);
    return undefined;
  }
  const labels = { sum: "Add the quantities together", max: "Keep the larger quantity", keep_user: "Keep my account's cart; add only new items" };
  const dialog = $("merge-dialog");
  return new Promise((resolve) => {
    const done = (value) => {
      dialog.close();
      resolve(value);
    };
    $("merge-options").replaceChildren(
      ...["sum", "max", "keep_user"].map((name) => {
        const c = preview.policies[name];
        return h(
          "div",
          { class: `merge-option${preview.defaultPolicy === name ? " default" : ""}`, "data-policy": name },
          h("h3", {}, labels[name]),
          h("ul", {}, ...c.lines.map((l) => h("li", {}, `${l.quantity} × ${productName(l.sku)}`))),
          h("p", {}, `${c.itemCount} items · `, h("strong", {}, money(c.total))),
          button("Use this", `merge-${name}`, () => done(name)),
        );
      }),
    );
    const notes = [
      ...preview.dropped.map((d) => `${productName(d.sku)} is no longer sold and will be left out.`),
      ...preview.short.map((s) => `Only ${s.available} of ${productName(s.sku)} in stock (you asked for ${s.requested}).`),
    ];
    $("merge-notes").textContent = notes.join(" ");
    $("merge-cancel").onclick = () => done(null);
    dialog.showModal();
  });
}

$("logout-btn").addEventListener("click", () => {
  localStorage.removeItem("cartsync-demo-user");
  cart.logout();
});
$("promo").addEventListener("submit", (e) => {
  e.preventDefault();
  const code = $("promo-code").value.trim();
  if (!code) return;
  attempt(() => {
    cart.applyPromoCode(code);
    $("promo-code").value = "";
  });
});

let holdTimer;
const extended = new Set(); // orders whose one extension is used
function showOrder(order) {
  clearInterval(holdTimer);
  const o = $("order");
  const pending = order.status === "pending_payment";
  const hold = h("span", { class: "hold", "data-testid": "hold" });
  const tick = () => {
    const left = Math.max(0, Math.floor((new Date(order.reservedUntil) - Date.now()) / 1000));
    hold.textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    hold.classList.toggle("low", left < 60);
    if (left === 0) clearInterval(holdTimer);
  };
  const act = (label, testid, fn) => {
    const b = h("button", { type: "button", "data-testid": testid }, label);
    b.addEventListener("click", async () => {
      try {
        showOrder(await fn());
      } catch (e) {
        toast(e.code === "hold_not_extendable" ? "This hold was extended once already" : e.message, e.code);
        if (e.details?.order) showOrder(orderOf(e.details.order));
      }
    });
    return b;
  };
  const parts = [
    h("p", {}, "Order ", h("strong", { "data-testid": "order-id" }, order.id), " · ", h("span", { "data-testid": "order-status", class: order.status === "paid" ? "paid" : "" }, order.status)),
    h("p", {}, `Subtotal ${money(order.subtotal)} · discounts −${money(order.discountTotal)} · total `, h("span", { "data-testid": "order-total" }, money(order.total))),
    h("ul", {}, ...order.giftCards.map((g) => h("li", {}, `gift card …${g.last4}: −${money(g.amount)}`))),
    h("p", {}, "Amount due ", h("strong", { "data-testid": "amount-due" }, money(order.amountDue))),
    pending ? h("p", {}, "Your items are held for ", hold, " more") : null,
    pending
      ? h(
          "div",
          { class: "actions" },
          act("Pay (test card)", "pay", () => devPay(order.id, "succeeded")),
          act("Pay (declined card)", "pay-fail", () => devPay(order.id, "failed")),
          act(extended.has(order.id) ? "Hold extended once" : "Hold 5 more minutes", "extend", async () => {
            try {
              return await cart.extendHold(order.id);
            } finally {
              extended.add(order.id);
            }
          }),
          act("Cancel order", "cancel-order", () => cart.cancelOrder(order.id)),
        )
      : null,
  ];
  o.replaceChildren(...parts.filter((p) => p !== null));
  o.hidden = false;
  if (pending) {
    tick();
    holdTimer = setInterval(tick, 1000);
  }
  if (order.status === "paid") cart.sync().catch(() => {});
}

// The API's order (snake_case) as the package's Order.
const orderOf = (o) => ({ ...o, discountTotal: o.discount_total, amountDue: o.amount_due, reservedUntil: o.reserved_until, giftCards: o.gift_cards ?? [] });

// The pay step of the demo: the development endpoint plays the payment provider and sends its
// signed webhook, so no secret is in the page.
async function devPay(id, status) {
  const res = await fetch(`${api}/v1/dev/orders/${encodeURIComponent(id)}/pay`, {
    method: "POST",
    headers: { "Content-Type": "application/json", ...cart.authHeaders() },
    body: JSON.stringify({ status }),
  });
  const body = await res.json();
  if (!res.ok) throw new CartError(body.error?.code ?? "unavailable", body.error?.message ?? `HTTP ${res.status}`, body.error);
  return orderOf(body);
}

$("checkout").addEventListener("click", async () => {
  const snap = cart.snapshot();
  const giftCard = $("gift-card").value.trim();
  try {
    // The total the shopper sees is the one they agree to pay: if prices moved, say so first.
    const order = await cart.checkout({ expectedTotal: snap.total, giftCards: giftCard ? [giftCard] : [] });
    $("gift-card").value = "";
    showOrder(order);
  } catch (e) {
    if (e.code === "price_changed") {
      toast(`Prices changed: the total is now ${money(e.details?.total)}. Review your cart and check out again.`, e.code);
      await cart.sync().catch(() => {});
    } else if (e.code === "promotion_unavailable") {
      const codes = (e.details?.promotions ?? []).map((p) => `${p.code} (${p.reason.replaceAll("_", " ")})`).join(", ");
      toast(`A promo code can no longer be used: ${codes}. Remove it and check out again.`, e.code);
    } else if (e.code === "out_of_stock") {
      const items = (e.details?.items ?? []).map((i) => `${productName(i.sku)} (${i.available} left)`).join(", ");
      toast(`Not enough stock for: ${items}. Save those lines for later or remove them, then check out again.`, e.code);
      await cart.sync().catch(() => {});
    } else if (e.code === "gift_card_unavailable") {
      const cards = (e.details?.gift_cards ?? []).map((g) => `…${g.last4} (${g.reason.replaceAll("_", " ")})`).join(", ");
      toast(`The gift card cannot be used: ${cards}`, e.code);
    } else {
      toast(e.message, e.code);
    }
  }
});
$("save-unavailable").addEventListener("click", () => attempt(() => (cart.snapshot().unavailable ?? []).forEach((l) => cart.saveForLater(l.sku))));
$("remove-unavailable").addEventListener("click", () => attempt(() => (cart.snapshot().unavailable ?? []).forEach((l) => cart.remove(l.sku))));

// The store's back office, for the demo: the admin API with the token the person types.
$("admin").addEventListener("submit", async (e) => {
  e.preventDefault();
  const change = {};
  const price = $("admin-price").value.trim();
  const stock = $("admin-stock").value.trim();
  if (price !== "") change.price = { amount: Math.round(Number(price) * 100), currency: "USD" };
  if (stock !== "") change.stock = Number(stock);
  if ($("admin-active").value !== "") change.active = $("admin-active").value === "true";
  const sku = $("admin-sku").value;
  const res = await fetch(`${api}/v1/admin/products/${encodeURIComponent(sku)}`, {
    method: "PUT",
    headers: { "Content-Type": "application/json", Authorization: `Bearer ${$("admin-token").value}` },
    body: JSON.stringify(change),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) return toast(body.error?.message ?? `HTTP ${res.status}`, body.error?.code);
  toast(`${body.name}: ${money(body.price)}, ${body.available} available${body.active ? "" : ", discontinued"}`);
  $("admin-price").value = $("admin-stock").value = "";
  await loadProducts();
  await cart.sync().catch(() => {});
});

$("cart-toggle").addEventListener("click", () => $("drawer").classList.toggle("open"));
addEventListener("online", renderNetwork);
addEventListener("offline", renderNetwork);

cart.subscribe(render);
renderNetwork();
// Prices and stock move while the shopper looks: read the cart again now and then, and when the
// page comes back into view.
setInterval(() => navigator.onLine && document.visibilityState === "visible" && cart.sync().catch(() => {}), 15_000);
document.addEventListener("visibilitychange", () => document.visibilityState === "visible" && cart.sync().catch(() => {}));
if (refused) toast(`Ignored the api parameter: ${refused} is not an API origin this shop allows`, "invalid_request");
render(cart.snapshot());
await loadProducts();
document.body.dataset.ready = "true";

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

function lineItem(line, saved) {
  const li = h("li", { "data-sku": line.sku });
  const price = line.priceChanged
    ? h("span", { class: "price" }, h("s", {}, money(line.priceAtAdd)), " ", money(line.currentPrice))
    : h("span", { class: "price" }, money(line.currentPrice ?? line.priceAtAdd));
  const stock = line.availability && line.availability !== "in_stock" ? h("em", { class: `avail ${line.availability}` }, line.availability.replace("_", " ")) : null;
  const off = !saved && line.discount && line.discount.amount > 0 ? h("span", { class: "line-discount", "data-testid": "line-discount" }, `−${money(line.discount)} → ${money(line.lineTotal)}`) : null;
  li.append(h("span", { class: "name" }, productName(line.sku)), " ", price, " ", off ?? "", " ", stock ?? "");
  if (saved) {
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
  $("lines").replaceChildren(...s.lines.map((l) => lineItem(l, false)));
  if (typed) {
    const input = $("lines").querySelector(`li[data-sku="${CSS.escape(typed.sku)}"] input`);
    if (input) {
      input.value = typed.value;
      input.focus();
    }
  }
  $("saved").replaceChildren(...s.saved.map((l) => lineItem(l, true)));
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
        h("h3", {}, p.name),
        h("p", { class: "price" }, money(p.price)),
        h("p", { class: `avail ${availability}` }, availability.replace("_", " ")),
      );
      card.append(button("Add to cart", "add", () => cart.add(p.sku, 1, p.price)));
      return card;
    }),
  );
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
    await cart.login(token);
  } catch (err) {
    toast(err.message, err.code);
  }
});
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

function showOrder(order) {
  const o = $("order");
  o.replaceChildren(
    h("p", {}, "Order ", h("strong", { "data-testid": "order-id" }, order.id), " · ", h("span", { "data-testid": "order-status" }, order.status)),
    h("p", {}, `Subtotal ${money(order.subtotal)} · discounts −${money(order.discountTotal)} · total `, h("span", { "data-testid": "order-total" }, money(order.total))),
    h("ul", {}, ...order.giftCards.map((g) => h("li", {}, `gift card …${g.last4}: −${money(g.amount)}`))),
    h(
      "p",
      {},
      "Amount due ",
      h("strong", { "data-testid": "amount-due" }, money(order.amountDue)),
      order.status === "pending_payment" ? ` (held until ${new Date(order.reservedUntil).toLocaleTimeString()})` : "",
    ),
  );
  o.hidden = false;
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
    } else if (e.code === "gift_card_unavailable") {
      const cards = (e.details?.gift_cards ?? []).map((g) => `…${g.last4} (${g.reason.replaceAll("_", " ")})`).join(", ");
      toast(`The gift card cannot be used: ${cards}`, e.code);
    } else {
      toast(e.message, e.code);
    }
  }
});
$("cart-toggle").addEventListener("click", () => $("drawer").classList.toggle("open"));
addEventListener("online", renderNetwork);
addEventListener("offline", renderNetwork);

cart.subscribe(render);
renderNetwork();
if (refused) toast(`Ignored the api parameter: ${refused} is not an API origin this shop allows`, "invalid_request");
render(cart.snapshot());
await loadProducts();
document.body.dataset.ready = "true";

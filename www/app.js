// The demo storefront: plain JavaScript on the package's no-bundler entry.
import init, { CartClient, CartError } from "./pkg/web.js";

const params = new URLSearchParams(location.search);
// The API lives beside the page unless ?api=… names another origin.
const api = params.get("api") || location.origin;
const $ = (id) => document.getElementById(id);
const money = (m) => (m ? new Intl.NumberFormat("en-US", { style: "currency", currency: m.currency }).format(m.amount / 100) : "");

await init();
const cart = new CartClient({ endpoint: api, storageKey: "cartsync-demo" });
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
  const li = document.createElement("li");
  li.dataset.sku = line.sku;
  const price = line.priceChanged
    ? `<s>${money(line.priceAtAdd)}</s> ${money(line.currentPrice)}`
    : money(line.currentPrice ?? line.priceAtAdd);
  const stock = line.availability && line.availability !== "in_stock" ? `<em class="avail ${line.availability}">${line.availability.replace("_", " ")}</em>` : "";
  const off = !saved && line.discount && line.discount.amount > 0 ? ` <span class="line-discount" data-testid="line-discount">−${money(line.discount)} → ${money(line.lineTotal)}</span>` : "";
  li.innerHTML = `<span class="name">${productName(line.sku)}</span> <span class="price">${price}</span>${off} ${stock}`;
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
      const li = document.createElement("li");
      li.dataset.code = c.code;
      li.className = c.applied ? "applied" : "not-applied";
      li.innerHTML = c.applied ? `<strong>${c.code}</strong> applied` : `<strong>${c.code}</strong> not applied: <span data-testid="reason">${reasonText(c)}</span>`;
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

function render(s) {
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
      const card = document.createElement("article");
      card.dataset.sku = p.sku;
      card.innerHTML = `<h3>${p.name}</h3><p class="price">${money(p.price)}</p><p class="avail ${p.availability}">${p.availability.replace("_", " ")}</p>`;
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
  const cards = order.giftCards.map((g) => `<li>gift card …${g.last4}: −${money(g.amount)}</li>`).join("");
  o.innerHTML = `<p>Order <strong data-testid="order-id">${order.id}</strong> · <span data-testid="order-status">${order.status}</span></p>
    <p>Subtotal ${money(order.subtotal)} · discounts −${money(order.discountTotal)} · total <span data-testid="order-total">${money(order.total)}</span></p>
    <ul>${cards}</ul>
    <p>Amount due <strong data-testid="amount-due">${money(order.amountDue)}</strong>${order.status === "pending_payment" ? ` (held until ${new Date(order.reservedUntil).toLocaleTimeString()})` : ""}</p>`;
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
render(cart.snapshot());
await loadProducts();
document.body.dataset.ready = "true";

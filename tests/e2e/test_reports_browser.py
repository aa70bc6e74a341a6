"""The cost report in Chromium: the charts draw the ledger's figures, and a row's link
leads to the tickets behind it; at desktop and phone width."""

from __future__ import annotations

import pytest

from tests.browser import signed_in
from tests.reports import Seed

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_manager_reads_the_charts_and_follows_a_row_to_its_tickets(
        page, live_server, cast, shots) -> None:
    seed = Seed(cast)
    want = seed.expected()
    signed_in(page, live_server, cast.manager)
    page.set_viewport_size({"width": 1440, "height": 900})
    page.goto(f"{live_server.url}/o/acme/reports/costs/")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-months')")
    drawn = page.evaluate("""() => {
        const chart = Chart.getChart('chart-months');
        return chart.data.datasets.map(d => [d.label, d.data]);
    }""")
    assert [label for label, _ in drawn] == ["Local", "Cloud", "All-cloud"]
    assert drawn[0][1] == [float(want["local_cost"])]
    assert drawn[1][1] == [float(want["cloud_cost"])]
    assert drawn[2][1] == [float(want["all_cloud_cost"])]
    assert page.get_by_role("link", name="Cost report").first.get_attribute(
        "aria-current") == "page"
    page.screenshot(path=str(shots / "reports-costs-desktop.png"), full_page=True)

    page.get_by_role("link", name="Tickets of PAY · Payments").click()
    page.wait_for_url("**/reports/tickets/**")
    keys = page.locator("[data-testid=tickets] tbody th a").all_inner_texts()
    assert set(keys) == {seed.t1.key, seed.t2.key, seed.t3.key}
    page.screenshot(path=str(shots / "reports-tickets-desktop.png"), full_page=True)

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{live_server.url}/o/acme/reports/costs/?group=model")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-rows')")
    overflow = page.evaluate("() => document.documentElement.scrollWidth > window.innerWidth")
    page.screenshot(path=str(shots / "reports-costs-phone.png"), full_page=True)
    assert not overflow, "the report must not scroll sideways on a phone"
    page.screenshot(path=str(shots / "reports-costs-phone.png"), full_page=True)

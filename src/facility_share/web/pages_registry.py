"""The page controllers of every context, in one list the app wires (pages grow per issue).

``SignOutPage`` stays last: the authorisation matrix (tests/test_authz.py) calls every route in
this order with each role's session, and signing out ends that session for every route after it.
"""

from __future__ import annotations

from facility_share.accounts.pages import AdminPages, ProfilePages, QualificationPages, SignInPages, SignOutPage
from facility_share.bookings.pages import BookingActionPages, BookingFormPages, CalendarPages, ManagerBookingPages
from facility_share.closures.pages import ClosurePages
from facility_share.feeds.pages import FeedPages
from facility_share.finance.report_pages import FinanceReportPages
from facility_share.finance.settlement_pages import SettlementPages
from facility_share.jobs.pages import JobPages
from facility_share.payments.pages import EnterprisePaymentPages, ManagerPaymentPages
from facility_share.usage.pages import EnterpriseUsagePages, FiguresPages, ManagerUsagePages

PAGE_CONTROLLERS = [
    SignInPages,
    ProfilePages,
    AdminPages,
    QualificationPages,
    CalendarPages,
    BookingFormPages,
    BookingActionPages,
    ManagerBookingPages,
    ManagerUsagePages,
    FiguresPages,
    EnterpriseUsagePages,
    FeedPages,
    ClosurePages,
    FinanceReportPages,
    EnterprisePaymentPages,
    ManagerPaymentPages,
    SettlementPages,
    JobPages,
    SignOutPage,
]

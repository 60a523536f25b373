"""Calendar subscription feeds (iCalendar): public busy blocks and private token feeds."""

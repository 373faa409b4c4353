"""The reproduction report: records judged against the book's figures (verdicts), laid out
as table cells (tables) and written as Markdown, HTML and JSON (render; the HTML from Jinja2
templates, html), with the spread over seeds (seeds). `book.run` is the `report` stage."""

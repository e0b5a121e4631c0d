from radsight.cli import app

app()

"""`pipeline test`: cases files and running them with the model judge (cases), assertions (assertions),
record and replay of cassettes (cassette), JUnit XML and the test report (junit).

May import: every layer up to runner.fake; never cli. Inside, one way: assertions <- cases;
cassette and junit stand alone.
"""

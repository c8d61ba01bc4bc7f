"""`pipeline test`: cases files and running them with the model judge (cases), assertions (assertions),
record and replay of cassettes (cassette), the JUnit XML and JSON reports (junit).

May import: every layer up to runner.fake; never cli. Inside, one way: assertions <- cases <- junit;
cassette stands alone.
"""
